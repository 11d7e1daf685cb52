#!/usr/bin/env python3
"""Gemma 3 logits, Wren and llama.cpp against one float32 reference, in one run.

Reference: tools/refs/gemma3_numpy.py, a numpy float32 forward on the weights
of GGUF (dequantized with gguf-py). For each prompt, at every position and
over the whole vocabulary, prints the distance from the reference (the largest
|logit difference|, the RMS difference, and the mean KL divergence of the
engine's next-token distribution from the reference's) for
  - llama.cpp on GGUF (tools/llama/llama-logits.c, its default f16 KV cache),
  - Wren on the same file converted byte for byte (8-bit activations, f16 cache),
  - Wren --exact (f32 activations, f32 cache), whose bound is 1e-3;
and whether each engine's greedy next token agrees with the reference's.
Pass: Wren's RMS difference and KL divergence over all prompts are no larger
than llama.cpp's, and --exact's largest difference is within 1e-3.
The long prompt (> 512 tokens) reaches past the sliding window.

  PYTHONPATH=$LLAMA_CPP/gguf-py python3 tools/compare-gemma3.py GGUF LLAMA_LOGITS [--threads 2]
LLAMA_LOGITS: tools/llama/llama-logits.c built against llama.cpp (see its header).
"""
import json, os, subprocess, sys, tempfile
import numpy as np

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from refs.gemma3_numpy import Gemma3Numpy  # noqa: E402

args = [a for a in sys.argv[1:] if not a.startswith("--")]
threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "2"
gguf, llama_logits = args[0], args[1]
wren = os.environ.get("WREN", os.path.join(ROOT, ".build/release/wren"))
work = tempfile.mkdtemp()
model = os.path.join(work, "model.wren")
subprocess.run([wren, "convert", gguf, "-o", model], check=True, capture_output=True)

story = ("Once upon a time, in a small village at the edge of a great forest, there lived an old clockmaker "
         "who repaired every clock in the valley. ")
prompts = [
    "The capital of France is",
    "<start_of_turn>user\nWrite a haiku about the sea.<end_of_turn>\n<start_of_turn>model\n",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    story * 30 + "The clockmaker's name was",
]
ref = Gemma3Numpy(gguf)
bound_exact = 1e-3
engines = ["llama.cpp", "wren", "wren --exact"]
worst = {e: 0.0 for e in engines}
sq = {e: 0.0 for e in engines}
kl = {e: 0.0 for e in engines}
count = 0
wren_not_worse = 0   # positions where Wren's largest difference is at most llama.cpp's


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))
for prompt in prompts:
    out = os.path.join(work, "llama.f32")
    ids = [int(t) for t in subprocess.run([llama_logits, gguf, prompt, out, threads], check=True, capture_output=True,
                                          text=True).stdout.split()]
    V = ref.w["token_embd.weight"].shape[0]
    lq = np.fromfile(out, dtype=np.float32).reshape(len(ids), V)
    # Every position of a short prompt; the last one of the long prompt.
    keep = list(range(len(ids))) if len(ids) <= 64 else [len(ids) - 1]
    r = ref.logits(ids, positions=keep)
    row = {"llama.cpp": lq[keep]}
    for name, extra in [("wren", []), ("wren --exact", ["--exact"])]:
        every = ["--all-positions"] if len(keep) > 1 else []
        js = subprocess.run([wren, "logits", "-m", model, prompt, "--top", str(V), "--json", "-t", threads] + every + extra,
                            check=True, capture_output=True, text=True).stdout
        d = json.loads(js)
        assert d["tokens"] == ids, f"token ids differ: wren {d['tokens'][:12]} llama.cpp {ids[:12]}"
        w = np.zeros((len(keep), V), np.float32)
        for i, p in enumerate(keep):
            for t, v in (d["positions"][p] if every else d["top"]):
                w[i, t] = v
        row[name] = w
    label = prompt[:40].replace("\n", "\\n")
    print(f"{label!r}: {len(ids)} tokens, positions {keep[0]}..{keep[-1]}")
    lr = log_softmax(r)
    count += len(keep)
    wren_not_worse += int((np.abs(row["wren"] - r).max(-1) <= np.abs(row["llama.cpp"] - r).max(-1)).sum())
    for name, L in row.items():
        diff = float(np.abs(L - r).max())
        rms = float(np.sqrt(np.mean((L.astype(np.float64) - r) ** 2)))
        k = (np.exp(lr) * (lr - log_softmax(L))).sum(-1)
        agree = int((L.argmax(-1) == r.argmax(-1)).sum())
        worst[name] = max(worst[name], diff)
        sq[name] += rms ** 2 * len(keep)
        kl[name] += float(k.sum())
        print(f"  {name:13s} max |Δ| {diff:.5f}  rms {rms:.5f}  KL {k.mean():.2e}  greedy agrees {agree}/{len(keep)}")
print(f"all {count} positions (Wren's largest difference at most llama.cpp's at {wren_not_worse} of them):")
for e in engines:
    print(f"  {e:13s} max |Δ| {worst[e]:.5f}  rms {np.sqrt(sq[e] / count):.5f}  mean KL {kl[e] / count:.2e}")
ok = sq["wren"] <= sq["llama.cpp"] and kl["wren"] <= kl["llama.cpp"] and worst["wren --exact"] <= bound_exact
print("PASS" if ok else "FAIL", f"(Wren's RMS and KL within llama.cpp's own; --exact within {bound_exact})")
sys.exit(0 if ok else 1)
