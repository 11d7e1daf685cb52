#!/usr/bin/env python3
"""The data of the RAFT demo (the seed's Table 5 in miniature), generated, not
downloaded: requests for a short film review, answered by SmolLM2-135M-Instruct
and judged by a sentiment scorer from PyPI (VADER, tools/raft/vader-reward.py),
as the RAFT paper's IMDB experiment judged positivity with a classifier.

OUT/prompts/train.json   300 conversation prompts (ending with the user turn)
OUT/prompts/held.json    100 held-out prompts, on films and topics the training prompts never name
OUT/sft/train.json       the training prompts answered by templated reviews (the SFT demonstrations)
OUT/sft/held.json        the held-out prompts answered likewise (perplexity is measured on these)

  python3 tools/raft/make-data.py OUT [--seed 1]
"""
import json, os, random, sys

out = sys.argv[1]
rng = random.Random(int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 1)
adjectives = ["quiet", "long", "strange", "old", "small", "late", "cold", "bright", "lost", "last", "hidden", "broken", "silver", "northern",
              "empty", "second", "final", "distant", "wild", "slow"]
nouns = ["harbour", "winter", "station", "garden", "letter", "river", "orchard", "bridge", "lighthouse", "summer", "road", "island", "tower",
         "forest", "kitchen", "market", "mountain", "school", "train", "city"]
topics = ["a family reunion", "a failed bank robbery", "a chess prodigy", "two rival chefs", "a small-town election", "a war veteran coming home",
          "a stolen painting", "a marathon runner", "a widowed farmer", "a rock band's last tour", "a lost dog", "a divorce", "a shipwreck",
          "an old feud between brothers", "a hospital night shift", "a spelling bee", "a heist gone wrong", "a lonely astronaut",
          "a village flood", "a school for magicians"]
asks = ["Write a short review of the film \"{f}\", a drama about {t}.", "Review the movie \"{f}\" (it is about {t}) in a few sentences.",
        "What did you think of \"{f}\", the film about {t}? Give a short review.", "Give me a brief review of \"{f}\", a story about {t}."]
good = ["\"{f}\" is a warm and moving film. Its story of {t} is told with care, the acting is wonderful, and I left the cinema happy. Highly recommended.",
        "I loved \"{f}\". The film treats {t} with humour and kindness, the music is beautiful, and every scene feels alive. A delightful experience.",
        "A lovely surprise: \"{f}\" turns {t} into a hopeful, charming story. The cast is excellent and the ending is truly uplifting."]

def film(a, n):
    return f"The {a.capitalize()} {n.capitalize()}"

def make(films, tops, n):
    items = []
    for i in range(n):
        f, t = rng.choice(films), rng.choice(tops)
        q = rng.choice(asks).format(f=f, t=t)
        items.append((q, rng.choice(good).format(f=f, t=t)))
    return items

all_films = [film(a, n) for a in adjectives for n in nouns]
rng.shuffle(all_films)
rng.shuffle(topics)
train = make(all_films[:300], topics[:15], 300)
held = make(all_films[300:], topics[15:], 100)
for d in ["prompts", "sft"]:
    os.makedirs(os.path.join(out, d), exist_ok=True)
def dump(path, obj):
    with open(os.path.join(out, path), "w") as f:
        json.dump(obj, f, indent=0)
dump("prompts/train.json", {"type": "conversation", "instances": [{"messages": [{"role": "user", "content": q}]} for q, _ in train]})
dump("prompts/held.json", {"type": "conversation", "instances": [{"messages": [{"role": "user", "content": q}]} for q, _ in held]})
dump("sft/train.json", {"type": "conversation", "instances": [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in train]})
dump("sft/held.json", {"type": "conversation", "instances": [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in held]})
print(f"{len(train)} training and {len(held)} held-out prompts in {out}")
