#!/usr/bin/env python3
"""A tiny random Gemma 3 GGUF and its float32 reference logits, for
Tests/WrenEngineTests/Gemma3Tests.swift.

The model reaches every Gemma 3 difference from llama at a size a test runs in
milliseconds: 3 layers with a window of 5 and a pattern of 2 (layers 0 and 2
windowed with RoPE base 10000, layer 1 global with base 1e6), QK-norm,
post-norms, GeGLU, √dim embedding scale, grouped-query attention (2 query
heads, 1 key/value head, head dimension 32 ≠ dim/heads), tied output.
Weights are f16 (the reference reads them dequantized). The reference is
tools/refs/gemma3_numpy.py on the written file; the sequences (12 and 16
tokens) run past the window.

  PYTHONPATH=$LLAMA_CPP/gguf-py python3 tools/make_gemma3_fixture.py
"""
import json, os, sys
import numpy as np
import gguf

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from refs.gemma3_numpy import Gemma3Numpy  # noqa: E402

out_dir = os.path.join(ROOT, "Tests", "WrenEngineTests", "Fixtures")
path = os.path.join(out_dir, "tiny-gemma3.gguf")
rng = np.random.default_rng(20261201)
vocab, dim, layers, heads, kv, hd, ff = 64, 64, 3, 2, 1, 32, 128
w = gguf.GGUFWriter(path, "gemma3")
w.add_context_length(64); w.add_embedding_length(dim); w.add_block_count(layers)
w.add_feed_forward_length(ff); w.add_head_count(heads); w.add_head_count_kv(kv)
w.add_key_length(hd); w.add_value_length(hd)
w.add_layer_norm_rms_eps(1e-6); w.add_rope_freq_base(1000000.0)
w.add_sliding_window(5)
w.add_uint32("gemma3.attention.sliding_window_pattern", 2)
w.add_file_type(1)
w.add_tokenizer_model("llama"); w.add_tokenizer_pre("default")
toks = ["<pad>", "<eos>", "<bos>", "<unk>"] + [f"▁t{i}" for i in range(vocab - 4)]
w.add_token_list(toks)
w.add_token_scores([0.0] * 4 + [-float(i) for i in range(vocab - 4)])
w.add_token_types([3, 3, 3, 2] + [1] * (vocab - 4))
w.add_bos_token_id(2); w.add_eos_token_id(1); w.add_unk_token_id(3); w.add_pad_token_id(0)
w.add_add_bos_token(True); w.add_add_space_prefix(False)


def mat(r, c, s=0.3):
    return (rng.standard_normal((r, c)) * s).astype(np.float16)


def norm(n):
    return (1 + rng.standard_normal(n) * 0.1).astype(np.float32)


w.add_tensor("token_embd.weight", mat(vocab, dim, 0.5))
for l in range(layers):
    p = f"blk.{l}."
    w.add_tensor(p + "attn_norm.weight", norm(dim))
    w.add_tensor(p + "attn_q.weight", mat(heads * hd, dim))
    w.add_tensor(p + "attn_k.weight", mat(kv * hd, dim))
    w.add_tensor(p + "attn_v.weight", mat(kv * hd, dim))
    w.add_tensor(p + "attn_q_norm.weight", norm(hd))
    w.add_tensor(p + "attn_k_norm.weight", norm(hd))
    w.add_tensor(p + "attn_output.weight", mat(dim, heads * hd))
    w.add_tensor(p + "post_attention_norm.weight", norm(dim))
    w.add_tensor(p + "ffn_norm.weight", norm(dim))
    w.add_tensor(p + "ffn_gate.weight", mat(ff, dim))
    w.add_tensor(p + "ffn_up.weight", mat(ff, dim))
    w.add_tensor(p + "ffn_down.weight", mat(dim, ff))
    w.add_tensor(p + "post_ffw_norm.weight", norm(dim))
w.add_tensor("output_norm.weight", norm(dim))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()

ref = Gemma3Numpy(path, swa_pattern=2)
cases = []
for ids in [[2, 7, 19, 33, 4, 60, 12, 12, 50, 9, 41, 27], [2] + list(rng.integers(4, vocab, 15))]:
    ids = [int(i) for i in ids]
    cases.append({"ids": ids, "logits": ref.logits(ids).astype(np.float32).tolist()})
with open(os.path.join(out_dir, "tiny_gemma3_reference.json"), "w") as f:
    json.dump({"reference": "tools/refs/gemma3_numpy.py (float32 on the f16 weights)", "cases": cases}, f)
print("wrote", path, os.path.getsize(path), "bytes")
