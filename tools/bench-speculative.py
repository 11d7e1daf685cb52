#!/usr/bin/env python3
"""Speculative decoding: speed with and without, same greedy output, one run.

Targets are conversions of the shipped SmolLM2-135M-Instruct q4_1 GGUF
(f32 and f16); the draft model is the q4_1 conversion itself. Each setting runs
the same chat prompts through `wren run --jsonl` (greedy, one process per
setting, alternating plain and speculative R times) and reports the median
generation tokens/s, the speed-up, the acceptance rate and tokens per target
pass, and whether every output is token for token the plain one.

  python3 tools/bench-speculative.py [-r 3] [-n 128] [-t 2] [--only TEXT]

--only runs the settings whose label contains TEXT.
"""
import json, os, statistics, subprocess, sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
def opt(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default
R, N, T = int(opt("-r", "3")), int(opt("-n", "128")), opt("-t", "2")
wren = os.path.join(ROOT, ".build/release/wren")
gguf = os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
work = os.path.join(ROOT, "models/bench")
os.makedirs(work, exist_ok=True)

def converted(kind):
    out = os.path.join(work, f"smol-{kind}.wren")
    if not os.path.exists(out):
        args = [wren, "convert", gguf, "-o", out] + ([] if kind == "q4_1" else ["--type", kind])
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return out

def chat(user):
    return {"messages": [{"role": "user", "content": user}], "n_predict": N, "temperature": 0}

OPEN = [chat("Write a short story about a lighthouse keeper who finds a message in a bottle."),
        chat("Explain how photosynthesis works, step by step."),
        chat("List the planets of the solar system in order, with one fact about each.")]
ARTICLE = ("The city council met on Tuesday to discuss the new bicycle lanes on Main Street. "
           "Council member Rivera said the lanes had reduced accidents by a third since March, "
           "while shop owners on the east side reported fewer customers arriving by car. "
           "The council voted five to two to keep the lanes and to add twenty parking spaces on Oak Avenue.")
REPEAT = [chat("Copy the following text exactly, then stop:\n\n" + ARTICLE),
          chat("Fix the spelling mistakes in this text and return the whole corrected text:\n\n"
               + ARTICLE.replace("council", "councel").replace("lanes", "lanse")),
          chat("Quote every sentence of this text that mentions the council, word for word:\n\n" + ARTICLE)]

def run(model, requests, extra):
    inp = "\n".join(json.dumps(r) for r in requests) + "\n"
    p = subprocess.run([wren, "run", "-m", model, "-t", T, "--jsonl"] + extra, input=inp, capture_output=True, text=True, check=True)
    return [json.loads(l) for l in p.stdout.splitlines()]

ONLY = opt("--only", "")

def bench(label, model, requests, extra):
    if ONLY not in label:
        return
    plain, spec = [], []
    for _ in range(R):
        plain.append(run(model, requests, []))
        spec.append(run(model, requests, extra))
    same = all(a["tokens"] == b["tokens"] for p, s in zip(plain, spec) for a, b in zip(p, s))
    def rate(runs):   # total generated tokens / total generation time, per repetition
        return statistics.median(sum(len(r["tokens"]) for r in rs) / sum(r["timings"]["predicted_ms"] / 1000 for r in rs) for rs in runs)
    sp = [r["timings"]["speculation"] for r in spec[-1]]
    drafted, accepted, passes = (sum(x[k] for x in sp) for k in ("drafted", "accepted", "target_passes"))
    toks = sum(len(r["tokens"]) for r in spec[-1])
    a, b = rate(plain), rate(spec)
    print(f"| {label} | {a:.1f} | {b:.1f} | {b / a:.2f} | {100 * accepted / max(1, drafted):.0f}% | {toks / max(1, passes):.2f} | {'yes' if same else 'NO'} |", flush=True)

q41, f16, f32 = converted("q4_1"), converted("f16"), converted("f32")
print(f"{N} tokens per prompt, greedy, {T} threads, median of {R}")
print("| setting | plain t/s | speculative t/s | speed-up | accepted | tokens/pass | same output |")
print("|---|---|---|---|---|---|---|")
bench("f32 target, q4_1 draft (--draft-n 8 --draft-p-min 0.3), open prompts", f32, OPEN, ["--draft", q41, "--draft-n", "8", "--draft-p-min", "0.3"])
bench("f16 target, q4_1 draft (--draft-n 8 --draft-p-min 0.3), open prompts", f16, OPEN, ["--draft", q41, "--draft-n", "8", "--draft-p-min", "0.3"])
bench("f16 target, prompt lookup (--lookup-ngram 3 --draft-n 12), copy/edit/quote prompts", f16, REPEAT, ["--lookup-ngram", "3", "--draft-n", "12"])
bench("q4_1 target, prompt lookup (--lookup-ngram 3 --draft-n 12), copy/edit/quote prompts", q41, REPEAT, ["--lookup-ngram", "3", "--draft-n", "12"])
bench("q4_1 target, prompt lookup (--lookup-ngram 3 --draft-n 12), open prompts", q41, OPEN, ["--lookup-ngram", "3", "--draft-n", "12"])
bench("f16 target, self-speculation (--draft-layers 20 --draft-p-min 0.5), open prompts", f16, OPEN, ["--draft-layers", "20", "--draft-p-min", "0.5"])
