#!/usr/bin/env python3
"""Golden bytes for Wren's quantizers, made by independent implementations:
the `gguf` package's numpy quantizers (gguf-py, which mirrors ggml's
quantize_row_*_ref) for the 32-element types, and ggml's own
quantize_row_q*_K_ref (called through ctypes in llama.cpp's libggml-base) for
the k-quants, which gguf-py cannot quantize. Dequantizations are gguf-py's.
Writes Tests/WrenKernelsTests/Fixtures/quant_golden.json.

  PYTHONPATH=$LLAMA_CPP/gguf-py LIBGGML=$LLAMA_CPP/build/bin/libggml-base.so \
  SMOL_F32=smol-f32.gguf python3 tools/make_quant_fixtures.py

LLAMA_CPP is the llama.cpp tree vendored by llama-cpp-python 0.3.36 (built from
source); SMOL_F32 is SmolLM2-135M-Instruct converted to an F32 GGUF, whose
real weight rows join the synthetic ones for the k-quants.
"""
import ctypes, json, os
import numpy as np
from gguf.quants import quantize, dequantize
from gguf import GGMLQuantizationType as T

rng = np.random.default_rng(20261128)
rows = []
# Awkward data: gaussian, uniform with offset, a block of zeros, tiny values,
# values straddling rounding points, one huge outlier per block.
x = np.concatenate([
    rng.standard_normal(256).astype(np.float32),
    (rng.random(128) * 3 + 1.5).astype(np.float32),
    np.zeros(32, np.float32),
    (rng.standard_normal(64) * 1e-4).astype(np.float32),
    (np.arange(64, dtype=np.float32) - 31.5) / 8,
    np.where(np.arange(64) % 32 == 5, 40.0, rng.standard_normal(64)).astype(np.float32),
]).astype(np.float32)
out = {"source": "gguf-py " + __import__("gguf").__version__ if hasattr(__import__("gguf"), "__version__") else "gguf-py",
       "values": [float(v) for v in x], "bytes": {}}
out["dequantized"] = {}
for name, t in [("f16", T.F16), ("bf16", T.BF16), ("q8_0", T.Q8_0), ("q4_0", T.Q4_0), ("q4_1", T.Q4_1),
                ("q5_0", T.Q5_0), ("q5_1", T.Q5_1)]:
    b = quantize(x.reshape(1, -1), t)
    out["bytes"][name] = bytes(np.asarray(b).tobytes()).hex()
    # gguf-py's dequantization of those bytes, as little-endian f32 bits.
    out["dequantized"][name] = np.asarray(dequantize(b, t), dtype=np.float32).tobytes().hex()

# The k-quants: super-blocks of 256. Synthetic blocks with the same kinds of
# awkwardness, then real rows of SmolLM2 (two rows of blk.0.ffn_down and of
# blk.5.ffn_down, 1536 values each).
k = np.concatenate([
    rng.standard_normal(256),
    rng.random(256) * 3 + 1.5,                                   # all positive, offset
    -(rng.random(256) * 2),                                      # all negative
    np.where(np.arange(256) // 16 == 3, 0.0, rng.standard_normal(256)),   # one zero sub-block
    np.zeros(256),                                               # a zero super-block
    rng.standard_normal(256) * 1e-4,                             # tiny
    np.where(np.arange(256) % 64 == 7, 25.0, rng.standard_normal(256)),   # outliers
    (np.arange(256) - 127.5) / 16,                               # a ramp
    np.full(256, 0.75),                                          # constant
]).astype(np.float32)
from gguf import GGUFReader
reader = GGUFReader(os.environ["SMOL_F32"])
tensors = {t.name: t for t in reader.tensors}
for name in ["blk.0.ffn_down.weight", "blk.5.ffn_down.weight"]:
    w = np.asarray(tensors[name].data, dtype=np.float32).reshape(-1, 1536)
    k = np.concatenate([k, w[0], w[1]])
lib = ctypes.CDLL(os.environ["LIBGGML"])
out["k_values"] = k.tobytes().hex()
out["k_bytes"], out["k_dequantized"] = {}, {}
for name, t, bb, fn in [("q2_k", T.Q2_K, 84, "quantize_row_q2_K_ref"), ("q3_k", T.Q3_K, 110, "quantize_row_q3_K_ref"),
                        ("q4_k", T.Q4_K, 144, "quantize_row_q4_K_ref"), ("q5_k", T.Q5_K, 176, "quantize_row_q5_K_ref"),
                        ("q6_k", T.Q6_K, 210, "quantize_row_q6_K_ref")]:
    buf = ctypes.create_string_buffer(len(k) // 256 * bb)
    f = getattr(lib, fn)
    f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    f(k.ctypes.data, buf, len(k))
    b = np.frombuffer(buf.raw, dtype=np.uint8).reshape(1, -1)
    out["k_bytes"][name] = buf.raw.hex()
    out["k_dequantized"][name] = np.asarray(dequantize(b, t), dtype=np.float32).tobytes().hex()
path = os.path.join(os.path.dirname(__file__), "..", "Tests", "WrenKernelsTests", "Fixtures", "quant_golden.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print("wrote", os.path.normpath(path), len(x), "values and", len(k), "for the k-quants")
