#!/usr/bin/env python3
"""lm-evaluation-harness's `local-completions` model against `wren serve`
(loopback only), compared with `wren eval mc` on the same questions.

    pip install lm_eval        # 0.4.x; torch and transformers are not needed for this model type
    python3 tools/check-lm-eval.py [-m models/smol.wren] [--wren .build/release/wren]

Writes 25 multiple-choice questions (the sentiment test set: the review, then
"Answer: " and each label) as a local JSONL task, starts the server, and runs
the harness with its remote tokenizer (the server's /tokenizer_info and
/tokenize) — every choice scored through /v1/completions with echo and
logprobs, exactly as the harness scores any OpenAI-compatible server. Then
runs `wren eval mc` (Wren's own implementation of the harness's loglikelihood)
on the same file and compares every choice's summed log-likelihood.

Both sides run the exact path (`--exact --kv-type f32`: f32 activations
against exactly dequantized weights). Passes when the accuracies are equal and
every |Δ| ≤ 1e-3: the same f32 arithmetic split into different passes (the
server reads a prompt in 64-token chunks, eval mc the context once and then
each continuation) differs by ~1e-5; a wrong token, position or context
boundary moves a summed log-likelihood by 0.1 or more. With --fast both use
the default 8-bit activations, where those different passes round
differently (up to ~0.4 on these nonsense labels' summed log-likelihoods);
then only the accuracies are compared.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from wren_server import start

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", default=os.path.join(ROOT, "models", "smol.wren"))
    ap.add_argument("--wren", default=os.path.join(ROOT, ".build", "release", "wren"))
    ap.add_argument("--fast", action="store_true", help="both sides on the default 8-bit activation path (no bound on |Δ|, only acc)")
    args = ap.parse_args()
    exact = [] if args.fast else ["--exact", "--kv-type", "f32"]
    import lm_eval
    from lm_eval.tasks import TaskManager

    work = tempfile.mkdtemp(prefix="wren-lm-eval-")
    data = json.load(open(os.path.join(ROOT, "examples", "sentiment", "test.json")))["instances"]
    labels = sorted({m["content"] for inst in data for m in inst["messages"] if m["role"] == "assistant"})
    rows = []
    for inst in data[:25]:
        user = next(m["content"] for m in inst["messages"] if m["role"] == "user")
        answer = next(m["content"] for m in inst["messages"] if m["role"] == "assistant")
        rows.append({"context": user + "\nAnswer: ", "choices": labels, "answer": labels.index(answer)})
    mc = os.path.join(work, "mc.jsonl")
    with open(mc, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    with open(os.path.join(work, "wren_mc.yaml"), "w") as f:
        f.write(f"""task: wren_sentiment_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {mc}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
target_delimiter: ""
metric_list:
  - metric: acc
""")

    name = os.path.splitext(os.path.basename(args.model))[0]
    proc, base, _ = start(args.wren, args.model, ["-t", "2"] + exact)
    try:
        t0 = time.time()
        out = lm_eval.simple_evaluate(
            model="local-completions",
            model_args={"model": name, "base_url": base + "/v1/completions", "tokenizer_backend": "remote",
                        "num_concurrent": 1, "max_retries": 1, "tokenized_requests": True},
            tasks=["wren_sentiment_mc"], task_manager=TaskManager(include_path=work), log_samples=True)
        harness_seconds = time.time() - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    acc_h = out["results"]["wren_sentiment_mc"]["acc,none"]
    samples = sorted(out["samples"]["wren_sentiment_mc"], key=lambda s: s["doc_id"])
    harness = [[float(r[0][0]) for r in s["resps"]] for s in samples]

    items = os.path.join(work, "items.jsonl")
    subprocess.run([args.wren, "eval", "mc", "-m", args.model, "--data", mc, "--output", items, "--force", "-t", "2"] + exact,
                   check=True, capture_output=True)
    wren = [json.loads(l)["logLikelihoods"] for l in open(items)]
    acc_w = sum(max(range(len(w)), key=lambda k: w[k]) == r["answer"] for w, r in zip(wren, rows)) / len(rows)
    worst, where = max((abs(a - b), (i, k, a, b)) for i, (h, w) in enumerate(zip(harness, wren)) for k, (a, b) in enumerate(zip(h, w)))
    i, k, a, b = where
    print(f"lm-evaluation-harness {lm_eval.__version__} local-completions through wren serve: acc {acc_h:.3f} "
          f"({len(samples)} questions × {len(labels)} choices in {harness_seconds:.1f} s)")
    print(f"wren eval mc on the same file: acc {acc_w:.3f}; worst |Δ log-likelihood| over {sum(map(len, wren))} choices: {worst:.2e}")
    print(f"  worst: question {i} choice {k} ({labels[k]!r}): harness {a:.6f}, wren eval mc {b:.6f}")
    if abs(acc_h - acc_w) > 1e-9 or (worst > 1e-3 and not args.fast):
        sys.exit("FAIL: the harness through the server disagrees with wren eval mc")
    print("lm-eval check passed")


if __name__ == "__main__":
    main()
