#!/usr/bin/env python3
"""Golden bytes for Wren's quantizers, made by an independent implementation:
the `gguf` package's numpy quantizers (gguf-py, which mirrors ggml's
quantize_row_*_ref). Writes Tests/WrenKernelsTests/Fixtures/quant_golden.json.

  pip install gguf numpy && python3 tools/make_quant_fixtures.py
  (or PYTHONPATH=path/to/llama.cpp/gguf-py; the fixture was made with llama-cpp-python 0.3.36's)
"""
import json, os
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
path = os.path.join(os.path.dirname(__file__), "..", "Tests", "WrenKernelsTests", "Fixtures", "quant_golden.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print("wrote", os.path.normpath(path), len(x), "values")
