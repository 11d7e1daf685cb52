#!/usr/bin/env python3
"""A small politeness preference set, generated (nothing downloaded): requests
for help with everyday tasks; the chosen answer is courteous, the rejected one
curt or rude, from several templates each. Writes paired_text_to_text JSONL
(prompt as "Question: ...\\nAnswer: ") with a train and a held-out split whose tasks
do not overlap, and the held-out pairs as {"prompt", "response"} lines for
`wren reward score`.

  python3 tools/make-preference-data.py OUT_DIR [--seed 1]
"""
import json, os, random, sys

out = sys.argv[1]
seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 1
rng = random.Random(seed)
tasks = ["planning a birthday party", "fixing a leaky tap", "writing a cover letter", "learning to juggle", "baking bread",
         "choosing a laptop", "training for a 5k run", "organising my desk", "writing a thank-you note", "growing tomatoes",
         "learning Spanish", "saving money each month", "repotting a plant", "cleaning a cast-iron pan", "packing for a trip",
         "starting a journal", "tuning a guitar", "making a budget", "painting a room", "studying for an exam",
         "cooking rice", "writing a poem", "walking a new puppy", "sleeping better", "sharpening a knife",
         "preparing for an interview", "making coffee", "setting up a fish tank", "choosing a book", "folding a shirt",
         "changing a bike tyre", "hosting a dinner", "stretching after exercise", "writing an email to my landlord",
         "learning chess", "making a smoothie", "keeping houseplants alive", "drawing a cat", "memorising a speech", "ironing a shirt"]
asks = ["Can you help me with {t}?", "I need some advice on {t}.", "Any tips for {t}?", "How should I go about {t}?"]
good = ["Of course! I'd be glad to help with {t}. Start with one small step and take your time; you're doing great.",
        "Happy to help! For {t}, a good first step is to make a short plan. Let me know if you'd like more detail.",
        "Great question. {T} is easier than it looks: go slowly, and feel free to ask me anything along the way.",
        "Thank you for asking! Here is a friendly tip for {t}: break it into simple steps and be patient with yourself."]
bad = ["No. Figure out {t} yourself.", "That's a stupid question. {T} is obvious.", "Why would I help you with {t}? Go away.",
       "Ugh, {t} again? Stop bothering me."]

def chat(q):
    return f"Question: {q}\nAnswer: "

def pairs(ts, n):
    res = []
    for i in range(n):
        t = ts[i % len(ts)]
        q = rng.choice(asks).format(t=t)
        res.append({"prompt": chat(q), "chosen": rng.choice(good).format(t=t, T=t[0].upper() + t[1:]),
                    "rejected": rng.choice(bad).format(t=t, T=t[0].upper() + t[1:])})
    return res

rng.shuffle(tasks)
train, held = pairs(tasks[:30], 120), pairs(tasks[30:], 40)
os.makedirs(out + "/train", exist_ok=True)
os.makedirs(out + "/held", exist_ok=True)
for name, rows in [("train/pairs.jsonl", train), ("held/pairs.jsonl", held)]:
    with open(os.path.join(out, name), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
with open(os.path.join(out, "held-responses.jsonl"), "w") as f:
    for r in held:
        f.write(json.dumps({"prompt": r["prompt"], "response": r["chosen"]}) + "\n")
        f.write(json.dumps({"prompt": r["prompt"], "response": r["rejected"]}) + "\n")
print(f"{len(train)} training pairs, {len(held)} held-out pairs in {out}")
