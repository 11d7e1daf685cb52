#!/usr/bin/env python3
"""How close Wren and llama.cpp each come to the float32 reference, in one run.

Reference: Tests/WrenEngineTests/Fixtures/smollm2_f32_reference.json (numpy
float32 forward on gguf-dequantized weights; tools/make_engine_fixtures.py).
For each prompt, both engines evaluate the same token ids from the same GGUF
bytes (Wren through its .wren conversion); we compare their logits for the
reference's top-40 ids at every position, and their 24-token greedy
continuations with the reference's.

  pip install llama-cpp-python   # builds llama.cpp from source (several minutes)
  python3 tools/compare-llamacpp.py [models/smol.wren] [--threads 2]
"""
import json, os, subprocess, sys
import numpy as np

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
args = [a for a in sys.argv[1:] if not a.startswith("--")]
threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 2
wren_model = args[0] if args else os.path.join(ROOT, "models/smol.wren")
gguf = os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
wren = os.path.join(ROOT, ".build/release/wren")
ref = json.load(open(os.path.join(ROOT, "Tests/WrenEngineTests/Fixtures/smollm2_f32_reference.json")))

from llama_cpp import Llama
llm = Llama(model_path=gguf, n_ctx=512, n_threads=threads, logits_all=True, verbose=False)

def diffs_vs_ref(get_logit, case):
    d = []
    for p, top in enumerate(case["top"]):
        for i, want in top:
            d.append(abs(get_logit(p, int(i)) - want))
    return np.array(d)

rows = []
for pi, case in enumerate(ref["variants"]["q4_1"]):
    toks = case["tokens"]
    llm.reset()
    llm.eval(toks)
    scores = np.array(llm.scores[: len(toks)])
    d_cpp = diffs_vs_ref(lambda p, i: float(scores[p, i]), case)
    # llama.cpp greedy continuation.
    llm.reset()
    g_cpp = []
    seq = list(toks)
    llm.eval(seq)
    for _ in range(len(case["greedy"])):
        nxt = int(np.argmax(llm.scores[len(seq) - 1]))
        g_cpp.append(nxt)
        seq.append(nxt)
        llm.eval([nxt])
    # Wren: top-300 logits at every position (the reference's top-40 are among them).
    text = ref["prompts"][pi]
    out = subprocess.run([wren, "logits", "-m", wren_model, "--json", "--all-positions", "--top", "300", "-t", str(threads), text],
                         capture_output=True, text=True, check=True)
    j = json.loads(out.stdout)
    assert j["tokens"] == toks, "token ids differ"
    pos = [{int(a): b for a, b in p} for p in j["positions"]]
    d_wren = diffs_vs_ref(lambda p, i: pos[p][i], case)
    r = subprocess.run([wren, "run", "-m", wren_model, "-p", text, "-n", str(len(case["greedy"])), "--temp", "0", "-t", str(threads)],
                       capture_output=True, text=True, check=True)
    def agree(g):
        n = 0
        for a, b in zip(g, case["greedy"]):
            if a != b:
                break
            n += 1
        return n
    tok_out = subprocess.run([wren, "tokenize", "-m", wren_model, "--json", "--no-bos-eos", "--no-special"], input=r.stdout,
                             capture_output=True, text=True, check=True)
    g_wren = json.loads(tok_out.stdout)
    rows.append((pi, d_cpp.max(), d_cpp.mean(), agree(g_cpp), d_wren.max(), d_wren.mean(), agree(g_wren)))

print(f"{'prompt':>6} | {'llama.cpp max|Δ|':>16} {'mean|Δ|':>8} {'greedy agree':>12} | {'Wren max|Δ|':>11} {'mean|Δ|':>8} {'greedy agree':>12}")
for pi, a, b, c, d, e, f in rows:
    print(f"{pi:>6} | {a:>16.4f} {b:>8.4f} {c:>9}/{len(ref['variants']['q4_1'][pi]['greedy'])} | {d:>11.6f} {e:>8.6f} {f:>9}/{len(ref['variants']['q4_1'][pi]['greedy'])}")
print("Δ: logit minus the float32 reference, over the reference's top-40 ids at every position (q4_1 weights).")
print("greedy agree: leading tokens of the 24-token greedy continuation equal to the reference's "
      "(Wren's is re-tokenized from its text, which can split differently after the first divergence).")
