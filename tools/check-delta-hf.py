#!/usr/bin/env python3
"""Interop of `wren delta --format hf` with LMFlow's and FastChat's delta scripts.

Both directions, on real weights:
  1. `wren delta make --format hf` writes tuned − base; the apply_delta loop of LMFlow/FastChat
     (base parameters += delta parameters, in PyTorch) must give back the tuned weights.
  2. their make_delta loop (tuned − base, save_pretrained with the tokenizer) writes a delta;
     `wren delta apply --format hf` must give back the tuned weights.
Tuned and base come from `wren export` of the two .wren files (f32). Bound: computing
(t − b) + b in f32 rounds twice, so |result − t| <= 2^-23 (|t| + |b|); the check allows
2^-22 (|t| + |b|), twice that.

  python3 tools/check-delta-hf.py BASE.wren TUNED.wren WORK      (needs torch, transformers)
"""
import os, subprocess, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
wren = os.environ.get("WREN", os.path.join(ROOT, ".build/release/wren"))
base_wren, tuned_wren, work = sys.argv[1:4]
os.makedirs(work, exist_ok=True)

def sh(*args):
    subprocess.run([wren, *args], check=True)

def load(path):
    return AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)

def params(model):
    """Named parameters, each storage once (a tied lm_head is the embedding; adding a delta
    to both names of one tensor would add it twice)."""
    seen, out = set(), {}
    for name, p in model.state_dict().items():
        if p.data_ptr() in seen:
            continue
        seen.add(p.data_ptr())
        out[name] = p
    return out

def compare(got, want, base, what):
    worst, worst_abs = 0.0, 0.0
    for name, w in want.items():
        g, b = got[name].float(), base[name].float()
        b_full = torch.zeros_like(w)                      # the base in the leading block (a grown vocabulary)
        b_full[tuple(slice(0, s) for s in b.shape)] = b
        err = (g - w).abs()
        bound = 2.0 ** -22 * (w.abs() + b_full.abs())
        worst = max(worst, float((err / bound.clamp_min(1e-38)).max()))
        worst_abs = max(worst_abs, float(err.max()))
    ok = worst <= 1.0
    print(f"{what}: {len(want)} tensors, max |diff| {worst_abs:.3g}, worst ratio to the bound {worst:.3f} -> {'PASS' if ok else 'FAIL'}")
    return ok

base_hf, tuned_hf = f"{work}/base-hf", f"{work}/tuned-hf"
sh("export", base_wren, "-o", base_hf, "--force")
sh("export", tuned_wren, "-o", tuned_hf, "--force")
base, tuned = params(load(base_hf)), params(load(tuned_hf))

# 1. Wren makes, LMFlow/FastChat apply_delta applies.
wren_delta = f"{work}/wren-delta-hf"
sh("delta", "make", "--format", "hf", "--base", base_wren, "--tuned", tuned_wren, "-o", wren_delta, "--force")
target = load(base_hf)
delta = params(load(wren_delta))
for name, p in params(target).items():
    assert name in delta, name
    p.data += delta[name]
ok1 = compare(params(target), tuned, base, "wren delta make --format hf, applied by the LMFlow/FastChat loop")

# 2. LMFlow/FastChat make_delta makes, Wren applies.
py_delta = f"{work}/py-delta-hf"
model = load(tuned_hf)
for name, p in params(model).items():
    assert name in base, name
    p.data -= base[name]
model.save_pretrained(py_delta)
AutoTokenizer.from_pretrained(tuned_hf).save_pretrained(py_delta)
applied = f"{work}/applied.wren"
sh("delta", "apply", "--format", "hf", "--base", base_wren, py_delta, "-o", applied, "--force")
sh("export", applied, "-o", f"{work}/applied-hf", "--force")
ok2 = compare(params(load(f"{work}/applied-hf")), tuned, base, "LMFlow/FastChat make_delta, applied by wren delta apply --format hf")
sys.exit(0 if ok1 and ok2 else 1)
