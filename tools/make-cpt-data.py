#!/usr/bin/env python3
"""Continuous-pretraining data from a domain the base model has not seen:
this repository's Swift sources. Training text: every module but WrenTuning;
held-out text: Sources/WrenTuning (same style and vocabulary, different code).
Writes LMFlow text_only files: OUT/train/code.json and OUT/eval/code.json.
Usage: python3 tools/make-cpt-data.py [OUT=.build/cpt]"""
import glob, json, os, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".build", "cpt")
files = sorted(glob.glob(os.path.join(ROOT, "Sources", "**", "*.swift"), recursive=True))
held = [f for f in files if "/WrenTuning/" in f]
train = [f for f in files if f not in held]
for name, fs in (("train", train), ("eval", held)):
    os.makedirs(os.path.join(out, name), exist_ok=True)
    with open(os.path.join(out, name, "code.json"), "w") as f:
        json.dump({"type": "text_only", "instances": [{"text": open(p).read()} for p in fs]}, f)
    print(f"{name}: {len(fs)} files, {sum(os.path.getsize(p) for p in fs)} bytes")
