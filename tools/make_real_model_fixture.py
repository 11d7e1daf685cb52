#!/usr/bin/env python3
"""Reference digests for the real model, made independently of Wren with the
`gguf` package (gguf-py): for selected tensors of SmolLM2-135M-Instruct Q4_1,
the SHA-256 of the tensor dequantized to float32 (GGUF row order), and for
q/k projections the SHA-256 in Hugging Face row order, obtained by inverting
llama.cpp's convert_hf_to_gguf `permute` (reshape(h, d/2, 2) -> (h, 2, d/2)).
Writes Tests/WrenFormatTests/Fixtures/smollm2_reference.json.

  pip install gguf numpy && python3 tools/make_real_model_fixture.py models/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import hashlib, json, os, sys
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

path = sys.argv[1] if len(sys.argv) > 1 else "models/SmolLM2-135M-Instruct.Q4_1.gguf"
r = GGUFReader(path)
n_head = int(r.fields["llama.attention.head_count"].parts[-1][0])
n_kv = int(r.fields["llama.attention.head_count_kv"].parts[-1][0])

def unpermute(w, heads):
    # GGUF rows (h, d/2, 2) back to HF rows (h, 2, d/2).
    rows, cols = w.shape
    return w.reshape(heads, rows // heads // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)

names = ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight",
         "blk.0.attn_norm.weight", "blk.17.ffn_down.weight", "blk.29.attn_q.weight", "blk.29.attn_k.weight",
         "output_norm.weight"]
out = {"model": os.path.basename(path), "reference": "gguf-py dequantize + inverse llama.cpp permute", "tensors": {}}
for t in r.tensors:
    if t.name not in names:
        continue
    shape = [int(x) for x in reversed(t.shape.tolist())]   # outermost first
    w = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
    e = {"dtype": t.tensor_type.name.lower(), "shape": shape,
         "f32_sha256": hashlib.sha256(np.ascontiguousarray(w).tobytes()).hexdigest(),
         "sum": float(w.astype(np.float64).sum()), "first": [float(v) for v in w.reshape(-1)[:4]]}
    if t.name.endswith("attn_q.weight") or t.name.endswith("attn_k.weight"):
        heads = n_head if "attn_q" in t.name else n_kv
        e["hf_f32_sha256"] = hashlib.sha256(np.ascontiguousarray(unpermute(w, heads)).tobytes()).hexdigest()
    out["tensors"][t.name] = e
dst = os.path.join(os.path.dirname(__file__), "..", "Tests", "WrenFormatTests", "Fixtures", "smollm2_reference.json")
with open(dst, "w") as f:
    json.dump(out, f, indent=1)
print("wrote", os.path.normpath(dst))
