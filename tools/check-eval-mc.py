#!/usr/bin/env python3
"""`wren eval mc` log-likelihoods against Hugging Face transformers (f32, the
same weights), as lm-evaluation-harness computes them.

Builds 50 multiple-choice requests (25 from examples/sentiment/test.json: the
review, then each label the set uses; 25 from a text file: a verse's opening
words, then its true continuation and three taken from other verses), runs
`wren eval mc --exact --kv-type f32 --output`, and recomputes every choice's
summed log-probability with transformers on the model exported by
`wren export --type f32`: the context's trailing whitespace moved to the
continuation, the context tokenized alone, the continuation the rest of the
whole string's tokens. Passes when every |Δ| ≤ 1e-3 (f32 against f32 with a
different summation order: ~1e-5 per token; a wrong token or position moves
a score by 0.1 or more).

    pip install torch transformers   # torch CPU wheel
    python3 tools/check-eval-mc.py [--text FILE] [--model models/smol.wren]
"""
import argparse, json, os, random, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WREN = os.path.join(ROOT, ".build", "release", "wren")


def requests(text_path):
    rng = random.Random(7)
    data = json.load(open(os.path.join(ROOT, "examples", "sentiment", "test.json")))["instances"]
    labels = sorted({m["content"] for inst in data for m in inst["messages"] if m["role"] == "assistant"})
    out = []
    for inst in data[:25]:
        user = next(m["content"] for m in inst["messages"] if m["role"] == "user")
        answer = next(m["content"] for m in inst["messages"] if m["role"] == "assistant")
        out.append({"context": user + "\nAnswer: ", "choices": labels, "answer": labels.index(answer)})
    verses = [l.split(" ", 1)[1] for l in open(text_path, encoding="utf-8").read().splitlines() if " " in l and len(l.split()) > 12]
    for v in rng.sample(verses, 25):
        words = v.split()
        k = len(words) // 2
        others = [" " + " ".join(o.split()[len(o.split()) // 2:]) for o in rng.sample(verses, 3)]
        choices = [" " + " ".join(words[k:])] + others
        rng.shuffle(choices)
        out.append({"context": " ".join(words[:k]), "choices": choices, "answer": choices.index(" " + " ".join(words[k:]))})
    return out


def harness_split(context, continuation):
    n = len(context) - len(context.rstrip())
    if n:
        continuation = context[-n:] + continuation
        context = context[:-n]
    return context, continuation


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "smol.wren"))
    ap.add_argument("--text", default=os.path.join(ROOT, ".build", "eval-ppl", "genesis.txt"),
                    help="lines 'REF verse text' (tools/eval-vs-llama-perplexity.sh fetches Genesis)")
    ap.add_argument("--work", default=os.path.join(ROOT, ".build", "check-mc"))
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    reqs = requests(a.text)
    mc = os.path.join(a.work, "mc.jsonl")
    with open(mc, "w") as f:
        for r in reqs:
            f.write(json.dumps(r) + "\n")
    items = os.path.join(a.work, "items.jsonl")
    subprocess.run([WREN, "eval", "mc", "-m", a.model, "--data", mc, "--exact", "--kv-type", "f32", "--output", items, "--force"],
                   check=True, capture_output=True)
    wren = [json.loads(l) for l in open(items)]
    hf = os.path.join(a.work, "hf-f32")
    subprocess.run([WREN, "export", a.model, "-o", hf, "--type", "f32", "--force"], check=True, capture_output=True)

    import torch
    from tokenizers import Tokenizer
    from transformers import LlamaForCausalLM
    torch.set_num_threads(2)
    tok = Tokenizer.from_file(os.path.join(hf, "tokenizer.json"))
    model = LlamaForCausalLM.from_pretrained(hf, torch_dtype=torch.float32).eval()
    worst, n = 0.0, 0
    for r, w in zip(reqs, wren):
        for k, choice in enumerate(r["choices"]):
            ctx, cont = harness_split(r["context"], choice)
            c_ids = tok.encode(ctx, add_special_tokens=False).ids
            whole = tok.encode(ctx + cont, add_special_tokens=False).ids
            cont_ids = whole[len(c_ids):]
            ids = torch.tensor([c_ids + cont_ids])
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
            ll = sum(logp[len(c_ids) - 1 + i, t].item() for i, t in enumerate(cont_ids))
            d = abs(ll - w["logLikelihoods"][k])
            worst = max(worst, d)
            n += 1
            if d > 1e-3:
                print(f"line {w['line']} choice {k}: wren {w['logLikelihoods'][k]:.6f} transformers {ll:.6f}", file=sys.stderr)
    print(f"{len(reqs)} requests, {n} choices: worst |Δ log-likelihood| = {worst:.2e} (bound 1e-3)")
    sys.exit(0 if worst <= 1e-3 else 1)


if __name__ == "__main__":
    main()
