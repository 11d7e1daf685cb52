#!/usr/bin/env python3
"""Tokenizer throughput, Wren vs Hugging Face `tokenizers`, side by side in one
run, single thread, on the same few MB of mixed text (Python standard-library
source code, license prose, and multilingual/emoji strings). Both time the
encoding only (not loading). Alternates the two 5 times; prints medians and
the ratio Wren / HF.

  python3 tools/bench-tokenizer.py [models/smol.wren] [--mb 4]
"""
import glob, json, os, statistics, subprocess, sys, sysconfig, time
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
from refs.smollm2_hf import smollm2_tokenizer

args = [a for a in sys.argv[1:] if not a.startswith("--")]
mb = float(sys.argv[sys.argv.index("--mb") + 1]) if "--mb" in sys.argv else 4.0
model = args[0] if args else os.path.join(ROOT, "models/smol.wren")
gguf = os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
wren = os.path.join(ROOT, ".build/release/wren")

parts = []
fx = json.load(open(os.path.join(ROOT, "Tests/WrenTokenizerTests/Fixtures/token_ids.json")))["strings"]
multilingual = "\n".join(fx)
for f in sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))[:400]:
    parts.append(open(f, encoding="utf-8", errors="replace").read())
    parts.append(multilingual)
for f in sorted(glob.glob("/usr/share/common-licenses/*")):
    if os.path.isfile(f):
        parts.append(open(f, encoding="utf-8", errors="replace").read())
text = "\n".join(parts)
while len(text.encode()) < mb * 1e6:
    text += text
text = text.encode()[: int(mb * 1e6)].decode("utf-8", errors="ignore")
nbytes = len(text.encode())
path = "/tmp/wren-bench-tokenizer.txt"
open(path, "w").write(text)

hf = smollm2_tokenizer(gguf)
wren_mbs, hf_mbs, counts = [], [], set()
for _ in range(5):
    t0 = time.perf_counter()
    ids = hf.encode(text, add_special_tokens=False).ids
    hf_mbs.append(nbytes / 1e6 / (time.perf_counter() - t0))
    r = subprocess.run([wren, "tokenize", "-m", model, "--stats", "--no-bos-eos"], stdin=open(path, "rb"),
                       capture_output=True, text=True, check=True)
    fields = r.stderr.split()
    wren_mbs.append(float(fields[fields.index("MB/s") + 1]))
    counts.add((len(ids), int(fields[fields.index("tokens") + 1])))
r = subprocess.run([wren, "tokenize", "-m", model, "--json", "--no-bos-eos"], stdin=open(path, "rb"), capture_output=True, text=True, check=True)
same = json.loads(r.stdout) == hf.encode(text, add_special_tokens=False).ids
print(f"ids identical to HF on the whole text: {same}")
print(f"text: {nbytes/1e6:.2f} MB mixed (code, prose, multilingual, emoji); tokens (HF, Wren): {sorted(counts)}")
print(f"HF tokenizers {__import__('tokenizers').__version__}: median {statistics.median(hf_mbs):.2f} MB/s  runs {[round(x, 2) for x in hf_mbs]}")
print(f"Wren:                    median {statistics.median(wren_mbs):.2f} MB/s  runs {[round(x, 2) for x in wren_mbs]}")
print(f"ratio Wren / HF: {statistics.median(wren_mbs) / statistics.median(hf_mbs):.2f}")
