#!/usr/bin/env python3
"""Float32 reference logits and greedy continuations for Wren's engine tests,
from an independent numpy forward pass (tools/refs/llama_numpy.py) over
SmolLM2-135M-Instruct Q4_1 weights dequantized exactly by `gguf`, with token
ids from HF `tokenizers` (tools/refs/smollm2_hf.py). Variants: the weights
as stored (q4_1), and as `wren convert --type q8_0` / `--type f16` store them
(requantized with gguf-py, whose bytes equal Wren's); and as `wren convert
--type q4_k_m / q5_k_m / q6_k` store them, read from llama-quantize's
requantization of the same GGUF (`--allow-requantize`, whose bytes equal
Wren's: MixtureTests). For each prompt: the top-40 logits at every position
and 24 greedy tokens (32 for the k-quant mixtures).
Writes Tests/WrenEngineTests/Fixtures/smollm2_f32_reference.json.

  pip install gguf tokenizers numpy
  LLAMA_QUANTIZE=$LLAMA_CPP/build/bin/llama-quantize python3 tools/make_engine_fixtures.py
"""
import json, os, subprocess, sys, tempfile
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import quantize, dequantize
sys.path.insert(0, os.path.dirname(__file__))
from refs.llama_numpy import LlamaNumpy
from refs.smollm2_hf import smollm2_tokenizer

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
GGUF = os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "<|im_start|>user\nWhat is the boiling point of water in Celsius?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nList three colors.<|im_end|>\n<|im_start|>assistant\n",
]
TOP, GEN = 40, 24

tok = smollm2_tokenizer(GGUF)
model = LlamaNumpy(GGUF)
stored = dict(model.w)
out = {"reference": "numpy float32 forward (tools/refs/llama_numpy.py) on gguf-dequantized weights", "top": TOP,
       "prompts": PROMPTS, "variants": {}}
for variant in ["q4_1", "q8_0", "f16"]:
    for name, w in stored.items():
        if w.ndim == 2 and variant == "q8_0":
            model.w[name] = dequantize(quantize(w, T.Q8_0), T.Q8_0).astype(np.float32).reshape(w.shape)
        elif w.ndim == 2 and variant == "f16":
            model.w[name] = w.astype(np.float16).astype(np.float32)
        else:
            model.w[name] = w
    model.out = model.w.get("output.weight", model.w["token_embd.weight"])
    cases = []
    for p in PROMPTS:
        ids = tok.encode(p, add_special_tokens=False).ids
        L = model.logits(ids)
        top = [[[int(i), float(row[i])] for i in np.argsort(-row, kind="stable")[:TOP]] for row in L]
        cases.append({"tokens": ids, "top": top, "greedy": model.greedy(ids, GEN)})
        print(variant, repr(p[:30]), repr(tok.decode(cases[-1]["greedy"])), file=sys.stderr)
    out["variants"][variant] = cases
# The k-quant mixtures: llama-quantize requantizes the same GGUF (its bytes are Wren's).
work = tempfile.mkdtemp()
for variant in ["q4_k_m", "q5_k_m", "q6_k"]:
    q = os.path.join(work, f"{variant}.gguf")
    subprocess.run([os.environ["LLAMA_QUANTIZE"], "--allow-requantize", GGUF, q, variant.upper(), "2"], check=True, capture_output=True)
    km = LlamaNumpy(q)
    cases = []
    for p in PROMPTS:
        ids = tok.encode(p, add_special_tokens=False).ids
        L = km.logits(ids)
        top = [[[int(i), float(row[i])] for i in np.argsort(-row, kind="stable")[:TOP]] for row in L]
        cases.append({"tokens": ids, "top": top, "greedy": km.greedy(ids, 32)})
        print(variant, repr(p[:30]), repr(tok.decode(cases[-1]["greedy"])), file=sys.stderr)
    out["variants"][variant] = cases
dst = os.path.join(ROOT, "Tests/WrenEngineTests/Fixtures/smollm2_f32_reference.json")
os.makedirs(os.path.dirname(dst), exist_ok=True)
json.dump(out, open(dst, "w"))
print("wrote", dst)
