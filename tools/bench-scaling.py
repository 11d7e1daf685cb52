#!/usr/bin/env python3
"""Thread scaling of Wren against llama.cpp on the same bytes, in any model shape.

For each shape it writes a llama GGUF with random f16 weights and a real
tokenizer (copied from a GGUF you have, by default the SmolLM2 file the main
README command fetches), quantizes it with llama.cpp's own `llama-quantize`
(by default q4_1 layers, q8_0 embedding and output, as the shipped SmolLM2
file; --quant names another llama-quantize type, such as Q4_K_M), converts
that byte for byte to .wren, then runs `wren bench` and `llama-bench` on it
alternately for every thread count, and prints tokens/s and the ratio (median
over the rounds). Random weights give meaningless text but the same work per
token as a trained model.

  python3 tools/bench-scaling.py --llama-cpp DIR [--threads 1,2,4,8,16]
      [--shapes m135:576:30:9:3:1536,m1b:2048:22:32:4:5632] [-p 128] [-n 32] [-r 2]
      [--rounds 2] [--vocab GGUF] [--work DIR] [--quant Q4_1|Q4_K_M|Q5_K_M|Q6_K|…]

DIR is a llama.cpp source tree (for example `vendor/llama.cpp` of the
llama-cpp-python source distribution: `pip download --no-deps --no-binary :all:
llama-cpp-python==0.3.36`); it is built there (build/, GGML_NATIVE=ON) unless
build/bin already has llama-bench and llama-quantize. Its gguf-py writes the
models. A shape is name:dim:layers:heads:kv_heads:ffn. ../shared/scaling-bench
packs the same comparison for machines without a Swift toolchain.
"""
import json, os, statistics, subprocess, sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))


def opt(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


if "-h" in sys.argv or "--help" in sys.argv or "--llama-cpp" not in sys.argv:
    print(__doc__)
    sys.exit(0 if "-h" in sys.argv or "--help" in sys.argv else 2)

LCPP = os.path.abspath(opt("--llama-cpp", ""))
THREADS = opt("--threads", "1,2")
SHAPES = opt("--shapes", "m135:576:30:9:3:1536").split(",")
P, N, R, ROUNDS = opt("-p", "128"), opt("-n", "32"), opt("-r", "2"), int(opt("--rounds", "2"))
QUANT = opt("--quant", "Q4_1")
VOCAB = opt("--vocab", os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
WORK = os.path.abspath(opt("--work", os.path.join(ROOT, "models/scaling")))
WREN = os.path.join(ROOT, ".build/release/wren")
BIN = os.path.join(LCPP, "build/bin")
for path, what in [(WREN, "wren (swift build -c release)"), (VOCAB, "the vocabulary GGUF (--vocab)"),
                   (os.path.join(LCPP, "gguf-py"), "gguf-py in the llama.cpp tree")]:
    if not os.path.exists(path):
        sys.exit(f"bench-scaling: missing {what}: {path}")
sys.path.insert(0, os.path.join(LCPP, "gguf-py"))
import numpy as np  # noqa: E402
import gguf  # noqa: E402

os.makedirs(WORK, exist_ok=True)


def build_llama():
    if all(os.path.exists(os.path.join(BIN, b)) for b in ("llama-bench", "llama-quantize")):
        return
    print(f"building llama.cpp in {LCPP}/build (native) …", flush=True)
    subprocess.run(["cmake", "-S", LCPP, "-B", os.path.join(LCPP, "build"), "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON",
                    "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", os.path.join(LCPP, "build"), "-j", str(os.cpu_count()), "--target", "llama-bench",
                    "llama-quantize"], check=True, stdout=subprocess.DEVNULL)


def write_random_llama(out, dim, layers, heads, kv, ffn):
    """An f16 llama GGUF with N(0, 0.02²) weights, unit norms and the vocabulary GGUF's tokenizer."""
    src = gguf.GGUFReader(VOCAB)
    w = gguf.GGUFWriter(out, "llama")
    hd = dim // heads
    w.add_context_length(4096); w.add_embedding_length(dim); w.add_block_count(layers)
    w.add_feed_forward_length(ffn); w.add_head_count(heads); w.add_head_count_kv(kv)
    w.add_rope_dimension_count(hd); w.add_layer_norm_rms_eps(1e-5); w.add_rope_freq_base(100000.0)
    w.add_file_type(1)
    for key, f in src.fields.items():
        if not key.startswith("tokenizer."):
            continue
        kind = f.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            strings = f.types[-1] == gguf.GGUFValueType.STRING
            w.add_array(key, [bytes(f.parts[i]).decode("utf-8", "surrogateescape") if strings else f.parts[i].tolist()[0] for i in f.data])
        elif kind == gguf.GGUFValueType.STRING:
            w.add_string(key, bytes(f.parts[f.data[0]]).decode("utf-8", "surrogateescape"))
        else:
            w.add_key_value(key, f.parts[f.data[0]].tolist()[0], kind)
    vocab = len(src.fields["tokenizer.ggml.tokens"].data)
    rng = np.random.default_rng(0)

    def mat(r, c):
        return (rng.standard_normal((r, c), dtype=np.float32) * 0.02).astype(np.float16)

    w.add_tensor("token_embd.weight", mat(vocab, dim))
    for i in range(layers):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(dim, np.float32))
        w.add_tensor(p + "attn_q.weight", mat(dim, dim)); w.add_tensor(p + "attn_k.weight", mat(kv * hd, dim))
        w.add_tensor(p + "attn_v.weight", mat(kv * hd, dim)); w.add_tensor(p + "attn_output.weight", mat(dim, dim))
        w.add_tensor(p + "ffn_norm.weight", np.ones(dim, np.float32))
        w.add_tensor(p + "ffn_gate.weight", mat(ffn, dim)); w.add_tensor(p + "ffn_up.weight", mat(ffn, dim))
        w.add_tensor(p + "ffn_down.weight", mat(dim, ffn))
    w.add_tensor("output_norm.weight", np.ones(dim, np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


def model(shape):
    name, dim, layers, heads, kv, ffn = shape.split(":")
    q41, wren = os.path.join(WORK, f"{name}-{QUANT.lower()}.gguf"), os.path.join(WORK, f"{name}-{QUANT.lower()}.wren")
    if not os.path.exists(wren):
        f16 = os.path.join(WORK, f"{name}-f16.gguf")
        print(f"making {name} (dim {dim}, {layers} layers, {heads}/{kv} heads, ffn {ffn}) …", flush=True)
        write_random_llama(f16, int(dim), int(layers), int(heads), int(kv), int(ffn))
        extra = ["--token-embedding-type", "q8_0", "--output-tensor-type", "q8_0"] if QUANT == "Q4_1" else []
        subprocess.run([os.path.join(BIN, "llama-quantize")] + extra + [f16, q41, QUANT], check=True, capture_output=True)
        os.remove(f16)
        subprocess.run([WREN, "convert", q41, "-o", wren, "--force"], check=True, capture_output=True)
    return name, q41, wren


def wren_bench(path):
    out = subprocess.run([WREN, "bench", "-m", path, "-p", P, "-n", N, "-t", THREADS, "-r", R, "--json"],
                         check=True, capture_output=True, text=True).stdout
    rows = json.loads(out)
    return {(x["test"], x["threads"]): x["tokens_per_s"] for x in rows}, rows[0].get("kernels", "?")


def llama_bench(path):
    out = subprocess.run([os.path.join(BIN, "llama-bench"), "-m", path, "-p", P, "-n", N, "-t", THREADS, "-r", R, "-o", "json"],
                         check=True, capture_output=True, text=True).stdout
    return {(f"pp{x['n_prompt']}" if x["n_prompt"] else f"tg{x['n_gen']}", x["n_threads"]): x["avg_ts"] for x in json.loads(out)}


build_llama()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"{cpu}, {os.cpu_count()} logical CPUs; {QUANT}; -p {P} -n {N} -r {R}, median of {ROUNDS} alternating rounds")
for shape in SHAPES:
    name, q41, wren = model(shape)
    w_runs, l_runs, kernels = [], [], "?"
    for _ in range(ROUNDS):
        w, kernels = wren_bench(wren)
        w_runs.append(w)
        l_runs.append(llama_bench(q41))
    print(f"\n{name} ({shape}), Wren kernels {kernels}")
    print("| test | threads | Wren t/s | llama.cpp t/s | ratio |")
    print("|---|---|---|---|---|")
    keys = sorted(w_runs[0], key=lambda k: (k[0][:2], int(k[0][2:]), k[1]))
    for k in keys:
        if all(k in l for l in l_runs):
            a = statistics.median(r[k] for r in w_runs)
            b = statistics.median(r[k] for r in l_runs)
            print(f"| {k[0]} | {k[1]} | {a:.1f} | {b:.1f} | {a / b:.2f} |", flush=True)
