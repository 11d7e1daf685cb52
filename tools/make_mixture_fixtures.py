#!/usr/bin/env python3
"""Golden per-tensor types and SHA-256s for `wren convert --type <mixture>`,
made by llama.cpp's llama-quantize. Writes
Tests/WrenFormatTests/Fixtures/mixture_golden.json.

The model is the test suite's TinyModel(seed: 11, tied: false, vocab: 64,
dim: 256, layers: 8, heads: 4, kvHeads: 1, ff: 320), regenerated here value for
value (the same SplitMix64 stream and float arithmetic as
Tests/TestSupport/TestSupport.swift), written as an F32 GGUF and quantized by
llama-quantize into each mixture (no importance matrix). Eight layers make
llama.cpp's "more bits" layers (0, 3, 6, 7) differ from the rest; gqa 4 takes
Q2_K's attn_v to q4_k; ffn_down rows of 320 take the k-quant fallbacks.

  PYTHONPATH=$LLAMA_CPP/gguf-py LLAMA_QUANTIZE=$LLAMA_CPP/build/bin/llama-quantize \\
      python3 tools/make_mixture_fixtures.py

LLAMA_CPP: the tree vendored by llama-cpp-python 0.3.36, built from source.
"""
import hashlib, json, os, subprocess, tempfile
import numpy as np
import gguf
from gguf import GGUFReader

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


class SplitMix:
    def __init__(self, seed):
        self.state = seed

    def take(self, n):
        """The next n outputs, vectorised: output k mixes state + (k+1)·golden."""
        k = np.arange(1, n + 1, dtype=np.uint64)
        z = (np.uint64(self.state) + k * np.uint64(GOLDEN))
        self.state = (self.state + n * GOLDEN) & MASK
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))

    def floats(self, n):
        # Float(Double(next() >> 11) * 0x1p-53 * 2 - 1)
        return ((self.take(n) >> np.uint64(11)).astype(np.float64) * 2.0**-53 * 2 - 1).astype(np.float32)

    def normals(self, n):
        # (0..<6).reduce(Float(0)) { $0 + float() } * 0.7071, in Float arithmetic
        u = self.floats(6 * n).reshape(n, 6)
        s = np.zeros(n, np.float32)
        for i in range(6):
            s = (s + u[:, i]).astype(np.float32)
        return (s * np.float32(0.7071)).astype(np.float32)


def tiny_model(seed=11, vocab=64, dim=256, layers=8, heads=4, kv=1, ff=320):
    rng = SplitMix(seed)
    np.seterr(over="ignore")

    def mat(r, c):
        return (rng.normals(r * c) * np.float32(0.2)).astype(np.float32).reshape(r, c)

    def norm(n):
        return (np.float32(1) + (rng.floats(n) * np.float32(0.1)).astype(np.float32)).astype(np.float32)

    hd = dim // heads
    w = [("token_embd.weight", mat(vocab, dim))]
    for l in range(layers):
        p = f"blk.{l}."
        w.append((p + "attn_norm.weight", norm(dim)))
        w.append((p + "attn_q.weight", mat(heads * hd, dim)))
        w.append((p + "attn_k.weight", mat(kv * hd, dim)))
        w.append((p + "attn_v.weight", mat(kv * hd, dim)))
        w.append((p + "attn_output.weight", mat(dim, heads * hd)))
        w.append((p + "ffn_norm.weight", norm(dim)))
        w.append((p + "ffn_gate.weight", mat(ff, dim)))
        w.append((p + "ffn_up.weight", mat(ff, dim)))
        w.append((p + "ffn_down.weight", mat(dim, ff)))
    w.append(("output_norm.weight", norm(dim)))
    w.append(("output.weight", mat(vocab, dim)))
    return w, dict(vocab=vocab, dim=dim, layers=layers, heads=heads, kv=kv, ff=ff)


def main():
    weights, h = tiny_model()
    work = tempfile.mkdtemp()
    f32 = os.path.join(work, "tiny-f32.gguf")
    wr = gguf.GGUFWriter(f32, "llama")
    wr.add_context_length(128); wr.add_embedding_length(h["dim"]); wr.add_block_count(h["layers"])
    wr.add_feed_forward_length(h["ff"]); wr.add_head_count(h["heads"]); wr.add_head_count_kv(h["kv"])
    wr.add_rope_dimension_count(h["dim"] // h["heads"]); wr.add_layer_norm_rms_eps(1e-5); wr.add_rope_freq_base(10000.0)
    wr.add_vocab_size(h["vocab"]); wr.add_file_type(0)
    wr.add_tokenizer_model("gpt2"); wr.add_tokenizer_pre("smollm")
    wr.add_token_list([f"t{i}" for i in range(h["vocab"])]); wr.add_token_types([1] * h["vocab"]); wr.add_token_merges([])
    for name, v in weights:
        wr.add_tensor(name, v)
    wr.write_header_to_file(); wr.write_kv_data_to_file(); wr.write_tensors_to_file(); wr.close()
    out = {"model": "TinyModel(seed: 11, tied: false, vocab: 64, dim: 256, layers: 8, heads: 4, kvHeads: 1, ff: 320)",
           "source": "llama-quantize (llama-cpp-python 0.3.36's llama.cpp), no importance matrix",
           "f32_sha256": {n: hashlib.sha256(v.tobytes()).hexdigest() for n, v in weights},
           "mixtures": {}}
    for mix in ["Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K"]:
        q = os.path.join(work, f"tiny-{mix}.gguf")
        subprocess.run([os.environ["LLAMA_QUANTIZE"], f32, q, mix, "1"], check=True, capture_output=True)
        r = GGUFReader(q)
        out["mixtures"][mix.lower()] = {t.name: [t.tensor_type.name.lower(), hashlib.sha256(bytes(t.data.tobytes())).hexdigest()]
                                        for t in r.tensors}
    path = os.path.join(os.path.dirname(__file__), "..", "Tests", "WrenFormatTests", "Fixtures", "mixture_golden.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
