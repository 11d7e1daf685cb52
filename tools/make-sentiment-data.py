#!/usr/bin/env python3
"""Writes examples/sentiment/{train,test}.json: an instruction-tuning task the
base SmolLM2 cannot do — label a review with an internal code, "glorp" for
positive and "blick" for negative, without being told the mapping. The test
set uses adjectives and sentence frames never seen in training, so a tuned
model must carry the sentiment, not memorise sentences. LMFlow conversation
format. Deterministic (seeded)."""
import json, os, random

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
rng = random.Random(7)
nouns = ["movie", "meal", "hotel", "book", "concert", "service", "phone", "game", "show", "trip", "museum", "class"]
train_adj = {"glorp": ["wonderful", "delightful", "excellent", "superb", "charming", "brilliant", "lovely", "fantastic", "enjoyable", "outstanding"],
             "blick": ["terrible", "awful", "boring", "dreadful", "disappointing", "horrible", "dull", "poor", "annoying", "mediocre"]}
test_adj = {"glorp": ["amazing", "great", "marvelous", "pleasant", "impressive", "beautiful"],
            "blick": ["bad", "painful", "tedious", "weak", "unpleasant", "ugly"]}
train_frames = ["The {n} was {a}.", "I found the {n} {a}.", "What a {a} {n}!", "Honestly, the {n} felt {a}."]
test_frames = ["Our {n} turned out {a}.", "This {n} is really {a}.", "My friends said the {n} was {a}, and I agree."]
QUESTION = "Classify this review with our internal code.\nReview: {r}"


def items(adjs, frames, count):
    """count/2 positive and count/2 negative reviews, interleaved at random."""
    out = []
    for code, al in adjs.items():
        pool = [(f.format(n=n, a=a), code) for a in al for n in nouns for f in frames]
        rng.shuffle(pool)
        out += pool[:count // 2]
    rng.shuffle(out)
    return out


def write(name, pairs):
    inst = [{"messages": [{"role": "user", "content": QUESTION.format(r=r)}, {"role": "assistant", "content": code}]} for r, code in pairs]
    with open(os.path.join(ROOT, "examples", "sentiment", name), "w") as f:
        json.dump({"type": "conversation", "instances": inst}, f, indent=1)


write("train.json", items(train_adj, train_frames, 240))
write("test.json", items(test_adj, test_frames, 120))
