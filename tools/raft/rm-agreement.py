#!/usr/bin/env python3
"""How well the demo's learned reward model agrees with the gold scorer (VADER).

Scores every sample of RAFT-gold's held-out iteration (WORK/raft-gold/samples-3.jsonl:
32 prompts x 8 samples, never trained on) with `wren reward score`, then counts, over
all pairs of samples of the same prompt that VADER separates by at least 0.05, how
often the learned reward orders them as VADER does.

  python3 tools/raft/rm-agreement.py WORK [--threads 2]
"""
import json, os, subprocess, sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
work = sys.argv[1]
threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "2"
wren = os.environ.get("WREN", os.path.join(ROOT, ".build/release/wren"))
model = os.environ.get("MODEL", os.path.join(ROOT, "models/smol.wren"))
groups, lines = [], []
for line in open(f"{work}/raft-gold/samples-3.jsonl"):
    inst = json.loads(line)
    outs = [o for o in inst["output"] if o["score"] is not None and o["text"].strip()]
    groups.append([(o["score"], len(lines) + i) for i, o in enumerate(outs)])
    user = [{"role": "user", "content": inst["input"]}]
    lines += [json.dumps({"messages": user + [{"role": "assistant", "content": o["text"]}]}) for o in outs]
r = subprocess.run([wren, "reward", "score", "-m", model, "--reward", f"{work}/rm", "-t", threads], input="\n".join(lines) + "\n",
                   capture_output=True, text=True, check=True)
learned = [json.loads(l)["reward"] for l in r.stdout.splitlines() if l.strip()]
assert len(learned) == len(lines), (len(learned), len(lines))
agree = total = 0
for g in groups:
    for a in range(len(g)):
        for b in range(a + 1, len(g)):
            (sa, ia), (sb, ib) = g[a], g[b]
            if abs(sa - sb) < 0.05:
                continue
            total += 1
            agree += (learned[ia] - learned[ib]) * (sa - sb) > 0
print(f"learned reward vs VADER on {len(lines)} held-out samples: {agree}/{total} pairs ordered alike ({100 * agree / max(1, total):.1f}%)")
