#!/usr/bin/env python3
"""Wren vs llama.cpp speed, side by side in one run, on the same bytes.

For each type (q4_1: the shipped GGUF; q8_0 and f16: the same model requantized
with the `gguf` package and written as GGUF), llama.cpp (llama-cpp-python,
built from source) reads the GGUF and Wren reads `wren convert` of that GGUF
(tensors byte-identical). Both run the same tests — ppP (P prompt tokens in one
call on an empty cache) and tgN (N tokens one at a time) — with the same thread
count, alternating Wren and llama.cpp R times. Prints medians and the ratio
Wren / llama.cpp per figure.

  pip install llama-cpp-python gguf numpy
  python3 tools/bench-vs-llamacpp.py [--types q4_1,q8_0,f16] [--threads 1,2] [-p 512] [-n 128] [-r 3]
"""
import json, os, statistics, subprocess, sys, time
import numpy as np

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
def opt(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default
types = opt("--types", "q4_1,q8_0,f16").split(",")
threads = [int(x) for x in opt("--threads", "1,2").split(",")]
P, N, R = int(opt("-p", "512")), int(opt("-n", "128")), int(opt("-r", "3"))
wren = os.path.join(ROOT, ".build/release/wren")
src = os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
work = os.path.join(ROOT, "models/bench")
os.makedirs(work, exist_ok=True)

def requantized_gguf(kind):
    """The shipped model with every 2-D tensor requantized to `kind` (norms stay f32)."""
    out = os.path.join(work, f"smol-{kind}.gguf")
    if os.path.exists(out):
        return out
    import gguf
    from gguf.quants import quantize, dequantize
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(out + ".part", "llama")
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k in ("general.architecture", "general.alignment"):
            continue
        t = f.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            et = f.types[1]
            vals = [bytes(f.parts[i]).decode() for i in f.data] if et == gguf.GGUFValueType.STRING else [f.parts[i].tolist()[0] for i in f.data]
            w.add_array(k, vals)
        elif t == gguf.GGUFValueType.STRING:
            w.add_string(k, bytes(f.parts[f.data[0]]).decode())
        else:
            w.add_key_value(k, f.parts[f.data[0]].tolist()[0], t)
    qt = {"q8_0": gguf.GGMLQuantizationType.Q8_0, "f16": gguf.GGMLQuantizationType.F16}[kind]
    for t in r.tensors:
        shape = [int(x) for x in reversed(t.shape.tolist())]
        x = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        if x.ndim == 2:
            q = quantize(x, qt)
            w.add_tensor(t.name, q, raw_shape=q.shape, raw_dtype=qt)
        else:
            w.add_tensor(t.name, x)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    os.replace(out + ".part", out)
    return out

def wren_model(gguf_path):
    out = gguf_path[:-5] + ".wren"
    if not os.path.exists(out):
        subprocess.run([wren, "convert", gguf_path, "-o", out], check=True, capture_output=True)
    return out

def bench_wren(path, th):
    r = subprocess.run([wren, "bench", "-m", path, "-p", str(P), "-n", str(N), "-t", str(th), "-r", "1", "--json"],
                       capture_output=True, text=True, check=True)
    return {o["test"]: o["tokens_per_s"] for o in json.loads(r.stdout)}

def bench_llamacpp(llm, vocab):
    rng = np.random.default_rng(42)
    out = {}
    toks = [int(x) for x in rng.integers(0, vocab, P)]
    llm.reset(); llm.eval(toks[:8])
    llm.reset(); t0 = time.perf_counter(); llm.eval(toks); out[f"pp{P}"] = P / (time.perf_counter() - t0)
    llm.reset(); t0 = time.perf_counter()
    for t in rng.integers(0, vocab, N):
        llm.eval([int(t)])
    out[f"tg{N}"] = N / (time.perf_counter() - t0)
    return out

from llama_cpp import Llama
print(f"| type | threads | test | Wren t/s | llama.cpp t/s | ratio |")
print(f"|---|---|---|---|---|---|")
for kind in types:
    g = src if kind == "q4_1" else requantized_gguf(kind)
    wm = wren_model(g)
    for th in threads:
        llm = Llama(model_path=g, n_ctx=max(P, N) + 16, n_batch=P, n_ubatch=P, n_threads=th, n_threads_batch=th, verbose=False)
        ws, ls = {}, {}
        for _ in range(R):
            for k, v in bench_wren(wm, th).items(): ws.setdefault(k, []).append(v)
            for k, v in bench_llamacpp(llm, llm.n_vocab()).items(): ls.setdefault(k, []).append(v)
        for test in ws:
            a, b = statistics.median(ws[test]), statistics.median(ls[test])
            print(f"| {kind} | {th} | {test} | {a:.1f} | {b:.1f} | {a / b:.2f} |", flush=True)
        del llm
