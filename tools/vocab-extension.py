#!/usr/bin/env python3
"""Vocabulary extension evidence (the seed's "VE" column) on SmolLM2-135M-Instruct.

Domain text: Swift source. Training text: the interfaces (.swiftinterface) of the Swift
toolchain's own modules, found beside `swiftc`, except Synchronization's. Held-out text: the
first 64 KB of Synchronization's interface (the same kind of text), and this repository's
Sources/ (Swift of another style, for tokens per byte only). All were written after
SmolLM2's tokenizer was trained (2024): the Swift 6.3 toolchain and this repository are from
2026, so none is in its training data.

For the base model and for the model extended by each N in --tokens, it prints:
  tokens per byte of the held-out interface and of this repository's Sources/;
  held-out bits per byte (`wren eval ppl -c 512`), right after extension;
  generation speed in bytes per second (8 greedy continuations of 64 tokens from held-out
  code, total bytes / total decode time);
and, with --train STEPS, the same after a short full finetune of each model on the training
text (the base model trained alike, as the control).

  python3 tools/vocab-extension.py WORK [--tokens 1000,4000] [--train 20] [--threads 2]
"""
import glob, json, os, re, shutil, subprocess, sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
work = sys.argv[1]
arg = lambda k, d: sys.argv[sys.argv.index(k) + 1] if k in sys.argv else d
counts = [int(x) for x in arg("--tokens", "1000,4000").split(",")]
steps = int(arg("--train", "0"))
threads = arg("--threads", "2")
wren = os.environ.get("WREN", os.path.join(ROOT, ".build/release/wren"))
model = os.environ.get("MODEL", os.path.join(ROOT, "models/smol.wren"))
os.makedirs(work, exist_ok=True)

swiftc = shutil.which("swiftc")
lib = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(swiftc))), "lib", "swift", "linux")
interfaces = sorted(f for f in glob.glob(f"{lib}/**/*.swiftinterface", recursive=True) if ".private." not in f)
held_file = [f for f in interfaces if "/Synchronization.swiftmodule/" in f][0]
interfaces = [f for f in interfaces if f != held_file]
train = [open(f, encoding="utf-8", errors="replace").read() for f in interfaces]
json.dump({"type": "text_only", "instances": [{"text": t} for t in train]}, open(f"{work}/train.json", "w"))
held = open(held_file, encoding="utf-8").read().encode()[:65536].decode("utf-8", errors="ignore")
open(f"{work}/held.txt", "w").write(held)
repo = "\n".join(open(f, encoding="utf-8").read() for f in sorted(glob.glob(f"{ROOT}/Sources/**/*.swift", recursive=True)))
print(f"training text: {len(interfaces)} interfaces from {lib}, {sum(len(t.encode()) for t in train)} bytes; "
      f"held-out: {len(held.encode())} bytes of {held_file}; Sources/: {len(repo.encode())} bytes")

def run(*args, **kw):
    return subprocess.run([wren, *args], capture_output=True, text=True, check=True, **kw)

def count(m, text):
    return int(re.search(r"tokens (\d+)", run("tokenize", "-m", m, "--stats", "--no-special", "--no-bos-eos", input=text).stderr).group(1))

def measure(m):
    n, n_repo = count(m, held), count(m, repo)
    ppl = run("eval", "ppl", "-m", m, "-f", f"{work}/held.txt", "-c", "512", "-t", threads)
    bpb = float(re.search(r"bits per byte ([\d.]+)", ppl.stdout + ppl.stderr).group(1))
    starts = [m_.start() for m_ in re.finditer(r"\n  (public |@inlinable|@available)", held)][::20][:8]
    reqs = "\n".join(json.dumps({"prompt": held[max(0, s - 400):s + 5], "n_predict": 64, "temperature": 0}) for s in starts)
    out = [json.loads(l) for l in run("run", "-m", m, "--jsonl", "-t", threads, input=reqs).stdout.splitlines() if l.strip()]
    gen_bytes = sum(len(o["text"].encode()) for o in out)
    secs = sum(o["timings"]["predicted_ms"] for o in out) / 1000
    return {"tokens_per_byte": n / len(held.encode()), "repo_tokens_per_byte": n_repo / len(repo.encode()), "bpb": bpb, "bytes_per_s": gen_bytes / secs, "tokens_per_s": sum(len(o["tokens"]) for o in out) / secs}

rows = [("base", model)]
for n in counts:
    out = f"{work}/ve{n}.wren"
    if not os.path.exists(out):
        r = subprocess.run([wren, "vocab", "extend", "-m", model, "--data", f"{work}/train.json", "--new-tokens", str(n), "-o", out],
                           capture_output=True, text=True)
        print(r.stderr.strip().splitlines()[-2] if r.returncode == 0 else r.stderr.strip())
        if r.returncode != 0:
            continue
    rows.append((f"+{n} tokens", out))
if steps:
    for name, m in list(rows):
        out = f"{work}/trained-{name.replace('+', '').replace(' ', '-')}"
        if not os.path.exists(f"{out}/model.wren"):
            subprocess.run([wren, "finetune", "-m", m, "--data", f"{work}/train.json", "-o", out, "--full", "--max-steps", str(steps),
                            "--block-size", "256", "--batch-size", "4", "--lr", "5e-5", "-t", threads, "--force"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows.append((f"{name}, {steps} steps of full finetuning", f"{out}/model.wren"))
print("\n| model | held-out tokens per byte | Sources/ tokens per byte | held-out bits per byte | generation bytes/s (tokens/s) |")
print("|---|---|---|---|---|")
for name, m in rows:
    r = measure(m)
    print(f"| {name} | {r['tokens_per_byte']:.4f} | {r['repo_tokens_per_byte']:.4f} | {r['bpb']:.4f} | {r['bytes_per_s']:.0f} ({r['tokens_per_s']:.0f}) |", flush=True)
