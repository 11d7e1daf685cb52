#!/usr/bin/env python3
"""The seed's Table 5 in miniature, end to end, on SmolLM2-135M-Instruct.

The task is a short film review, judged by VADER sentiment (the "gold" reward,
tools/raft/vader-reward.py). This script runs, in order:
  base      the model as it is
  SFT       LoRA finetune on templated positive reviews (tools/raft/make-data.py)
  RAFT gold RAFT from SFT, rewarded by VADER through --reward-cmd
  RM        a reward model trained on pairs of RAFT-gold samples (a prompt's K samples
            by VADER, i-th best against i-th worst; iterations 1-2 train, 3 held out)
  RAFT RM   RAFT from SFT, rewarded by that learned model
  DPO       DPO from SFT on the same pairs (the SFT policy as the reference)

Each policy is then measured on 100 held-out prompts: greedy answers of at least
16 and at most 48 tokens, their mean VADER reward ± standard error, distinct-1/2
and mean length in words, and the perplexity of the held-out templated reviews
(`wren eval nll`). It prints a markdown table and writes WORK/table.json. Steps
whose output exists are not run again.

  python3 tools/raft/table.py WORK [--threads 2]
"""
import json, math, os, subprocess, sys, time

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
work = sys.argv[1]
threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "2"
wren = os.environ.get("WREN", os.path.join(ROOT, ".build/release/wren"))
model = os.environ.get("MODEL", os.path.join(ROOT, "models/smol.wren"))
vader_cmd = f"python3 {os.path.join(ROOT, 'tools/raft/vader-reward.py')}"
data = os.path.join(work, "data")
os.makedirs(work, exist_ok=True)
times = json.load(open(os.path.join(work, "times.json"))) if os.path.exists(os.path.join(work, "times.json")) else {}

def step(name, out, cmd):
    if os.path.exists(out):
        return
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    t = time.time()
    subprocess.run(cmd, check=True)
    times[name] = time.time() - t
    json.dump(times, open(os.path.join(work, "times.json"), "w"))

common = ["-t", threads, "--lora-targets", "all", "--lora-r", "8", "--lora-alpha", "16"]
raft_flags = ["--prompts", f"{data}/prompts/train.json", "--eval-prompts", f"{data}/prompts/held.json", "--iterations", "3",
              "--prompts-per-iteration", "32", "--k", "8", "--min-new-tokens", "16", "--max-new-tokens", "48", "--temp", "0.85",
              "--epochs", "2", "--lr", "1e-4", "--init-adapter", f"{work}/sft"]
step("data", data, ["python3", os.path.join(ROOT, "tools/raft/make-data.py"), data])
step("SFT", f"{work}/sft/adapter_model.safetensors",
     [wren, "finetune", "-m", model, "--data", f"{data}/sft/train.json", "-o", f"{work}/sft", "--epochs", "1", "--lr", "2e-4"] + common)
step("RAFT gold", f"{work}/raft-gold/adapter_model.safetensors",
     [wren, "raft", "-m", model, "-o", f"{work}/raft-gold", "--reward-cmd", vader_cmd] + raft_flags + common)

# Preference pairs from RAFT-gold's samples: per prompt, its K samples sorted by VADER, the i-th best
# against the i-th worst for i < K/2, where VADER separates them by at least 0.05.
pairs_dir = f"{work}/pairs"
if not os.path.exists(pairs_dir):
    os.makedirs(f"{pairs_dir}/train"); os.makedirs(f"{pairs_dir}/held")
    for it, split in [(1, "train"), (2, "train"), (3, "held")]:
        with open(f"{pairs_dir}/{split}/it{it}.jsonl", "w") as f:
            for line in open(f"{work}/raft-gold/samples-{it}.jsonl"):
                inst = json.loads(line)
                outs = sorted((o for o in inst["output"] if o["score"] is not None and o["text"].strip()), key=lambda o: -o["score"])
                user = [{"role": "user", "content": inst["input"]}]
                for i in range(len(outs) // 2):
                    best, worst = outs[i], outs[-1 - i]
                    if best["score"] - worst["score"] < 0.05:
                        continue
                    f.write(json.dumps({"chosen": {"messages": user + [{"role": "assistant", "content": best["text"]}]},
                                        "rejected": {"messages": user + [{"role": "assistant", "content": worst["text"]}]}}) + "\n")
step("RM", f"{work}/rm/adapter_model.safetensors",
     [wren, "reward", "train", "-m", model, "--data", f"{pairs_dir}/train", "--eval-data", f"{pairs_dir}/held", "-o", f"{work}/rm",
      "--epochs", "2", "--batch-size", "4"] + common)
step("RAFT RM", f"{work}/raft-rm/adapter_model.safetensors",
     [wren, "raft", "-m", model, "-o", f"{work}/raft-rm", "--reward", f"{work}/rm"] + raft_flags + common)
step("DPO", f"{work}/dpo/adapter_model.safetensors",
     [wren, "dpo", "-m", model, "--data", f"{pairs_dir}/train", "--eval-data", f"{pairs_dir}/held", "-o", f"{work}/dpo",
      "--epochs", "2", "--batch-size", "4", "--beta", "0.1", "--lr", "1e-4", "--init-adapter", f"{work}/sft"] + common)

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
vader = SentimentIntensityAnalyzer()
held = json.load(open(f"{data}/prompts/held.json"))["instances"]

def measure(adapter):
    lora = ["--lora", adapter] if adapter else []
    reqs = "\n".join(json.dumps({"messages": i["messages"], "n_predict": 48, "temperature": 0}) for i in held)
    r = subprocess.run([wren, "run", "-m", model, "--jsonl", "--min-tokens", "16", "-t", threads] + lora, input=reqs,
                       capture_output=True, text=True, check=True)
    texts = [json.loads(l)["text"] for l in r.stdout.splitlines() if l.strip()]
    scores = [vader.polarity_scores(t)["compound"] for t in texts]
    mean = sum(scores) / len(scores)
    se = math.sqrt(sum((s - mean) ** 2 for s in scores) / (len(scores) - 1) / len(scores))
    words = [t.lower().split() for t in texts]
    uni = [w for ws in words for w in ws]
    bi = [ws[i] + " " + ws[i + 1] for ws in words for i in range(len(ws) - 1)]
    nll = subprocess.run([wren, "eval", "nll", "-m", model, "--data", f"{data}/sft/held.json", "-t", threads] + lora,
                         capture_output=True, text=True, check=True)
    import re
    m = re.search(r"PPL = ([\d.]+)", nll.stdout + nll.stderr)
    ppl = float(m.group(1)) if m else float("nan")
    return {"reward": mean, "se": se, "ppl": ppl, "distinct1": len(set(uni)) / len(uni), "distinct2": len(set(bi)) / max(1, len(bi)),
            "length": len(uni) / len(texts), "example": texts[0]}

rows = [("base", None, None), ("SFT", f"{work}/sft", "SFT"), ("RAFT (gold reward)", f"{work}/raft-gold", "RAFT gold"),
        ("RAFT (learned reward)", f"{work}/raft-rm", "RAFT RM"), ("DPO", f"{work}/dpo", "DPO")]
table = {}
print("\n| model | held-out gold reward (mean ± s.e.) | perplexity | distinct-1 | distinct-2 | mean length (words) | wall time |")
print("|---|---|---|---|---|---|---|")
for name, adapter, tkey in rows:
    m = measure(adapter)
    wall = times.get(tkey)
    if tkey in ("RAFT gold", "RAFT RM", "DPO") and "SFT" in times:
        wall = (wall or 0) + times["SFT"]
    if tkey == "RAFT RM":
        wall += times.get("RM", 0) + times.get("RAFT gold", 0)
    if tkey == "DPO":
        wall += times.get("RAFT gold", 0)
    m["wall"] = wall
    table[name] = m
    print(f"| {name} | {m['reward']:+.3f} ± {m['se']:.3f} | {m['ppl']:.2f} | {m['distinct1']:.3f} | {m['distinct2']:.3f} | {m['length']:.1f} | "
          + (f"{wall / 60:.1f} min" if wall else "—") + " |", flush=True)
json.dump(table, open(os.path.join(work, "table.json"), "w"), indent=1)
# Over-optimisation check: gold reward of each RAFT-RM iteration's adapter beside the learned reward RAFT saw.
print("\nRAFT on the learned reward, per iteration: learned held-out reward (from raft.jsonl) vs gold (VADER)")
rm_rows = [json.loads(l) for l in open(f"{work}/raft-rm/raft.jsonl")]
for r in rm_rows:
    it = r["iteration"]
    gold = measure(f"{work}/raft-rm/iter-{it}/sft" if it > 0 else f"{work}/sft")["reward"]
    print(f"iteration {it}: learned {r.get('eval_reward', float('nan')):+.3f}, gold {gold:+.3f}")
