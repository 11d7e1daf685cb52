#!/usr/bin/env python3
"""Batched sampling against sampling one after another, in one run.

Runs `wren run --samples K` (the K continuations of one prompt decoded together,
the prompt evaluated once) and `wren run --samples K --sequential` (the same K
jobs through the one-sequence generator, which reuses the prompt's cache)
alternately, R rounds, and prints each round's generated tokens per second and
the median ratio. --min-tokens N makes every sample exactly N tokens long, so
both sides generate the same number of tokens.

  python3 tools/bench-batch-sampling.py -m models/smol.wren [-k 8] [-n 64] [-t 2] [-r 5] [-p PROMPT]
"""
import argparse, os, re, statistics, subprocess, sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
ap = argparse.ArgumentParser()
ap.add_argument("-m", "--model", default=os.path.join(ROOT, "models/smol.wren"))
ap.add_argument("-k", type=int, default=8, help="samples")
ap.add_argument("-n", type=int, default=64, help="tokens per sample")
ap.add_argument("-t", type=int, default=2, help="threads")
ap.add_argument("-r", type=int, default=5, help="rounds")
ap.add_argument("-p", "--prompt", default="<|im_start|>user\nWrite a short story about a lighthouse keeper.<|im_end|>\n<|im_start|>assistant\n")
ap.add_argument("--wren", default=os.environ.get("WREN", os.path.join(ROOT, ".build/release/wren")))
a = ap.parse_args()

def once(sequential):
    cmd = [a.wren, "run", "-m", a.model, "-p", a.prompt, "-n", str(a.n), "--min-tokens", str(a.n), "--samples", str(a.k),
           "-t", str(a.t), "-c", "512", "--verbose"] + (["--sequential"] if sequential else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    m = re.search(r"(\d+) generated tokens in ([\d.]+) s", r.stderr)
    tokens, seconds = int(m.group(1)), float(m.group(2))
    assert tokens == a.k * a.n, f"expected {a.k * a.n} tokens, got {tokens}"
    return tokens / seconds

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"{a.k} samples × {a.n} tokens, {a.t} threads, {os.path.basename(a.model)}, CPU: {cpu}")
ratios = []
for i in range(a.r):
    seq, bat = once(True), once(False)
    ratios.append(bat / seq)
    print(f"round {i + 1}: sequential {seq:7.1f} tok/s   batched {bat:7.1f} tok/s   ratio {bat / seq:.2f}")
print(f"median ratio {statistics.median(ratios):.2f} (target ≥ 3)")
