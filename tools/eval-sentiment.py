#!/usr/bin/env python3
"""Held-out accuracy on examples/sentiment/test.json: greedy answers from
`wren run --jsonl` (chat template applied), correct when the reply starts with
the expected code. Usage: python3 tools/eval-sentiment.py MODEL [--lora DIR]"""
import json, os, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
args = sys.argv[1:]
model = args[0]
extra = args[1:]
test = json.load(open(os.path.join(ROOT, "examples", "sentiment", "test.json")))["instances"]
reqs = "".join(json.dumps({"messages": [i["messages"][0]], "n_predict": 6, "temperature": 0}) + "\n" for i in test)
out = subprocess.run([os.path.join(ROOT, ".build", "release", "wren"), "run", "-m", model, "--jsonl", "-t", "2"] + extra,
                     input=reqs, capture_output=True, text=True)
if out.returncode != 0:
    sys.exit(out.stderr)
replies = [json.loads(l)["text"] for l in out.stdout.splitlines() if l.strip()]
correct = sum(r.strip().lower().startswith(i["messages"][1]["content"]) for r, i in zip(replies, test))
print(f"{correct}/{len(test)} correct ({100 * correct / len(test):.1f}%); first replies: {replies[:3]}")
