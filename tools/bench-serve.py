#!/usr/bin/env python3
"""Continuous batching, measured: total generated tokens/s of N concurrent
streams against one stream, on one `wren serve` started here (loopback only).

    python3 tools/bench-serve.py -m models/smol.wren [-t 2] [--streams 4] [--tokens 128] [-r 3]

Each stream is a /v1/completions request with its own prompt and seed, streamed
(so time to first token is seen), with the end tokens banned through
logit_bias so every stream generates exactly --tokens tokens. A round of one
stream and a round of N run alternately, -r times; the script prints each
round, the medians, their ratio, and time to first token under load.
Standard library only.
"""
import argparse
import json
import signal
import statistics
import threading
import time
import urllib.request

from wren_server import start

PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a refrigerator keeps food cold, step by step.",
    "List some reasons why people enjoy gardening, and describe each one.",
    "Describe a walk through a busy market in the morning.",
    "Tell me about the history of bicycles and how they changed cities.",
    "What makes a good teacher? Give several examples.",
    "Describe the water cycle to a ten-year-old.",
    "Write a letter to a friend about a trip to the mountains.",
]


def stream(base, prompt, seed, tokens, out):
    body = {"prompt": prompt, "max_tokens": tokens, "temperature": 0.8, "seed": seed, "stream": True,
            "logit_bias": {"0": -100, "1": -100, "2": -100}}
    req = urllib.request.Request(base + "/v1/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    t0 = time.time()
    first = None
    n = 0
    with urllib.request.urlopen(req, timeout=600) as r:
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk["choices"] and chunk["choices"][0]["text"]:
                n += 1 if first is not None else 0
                if first is None:
                    first = time.time() - t0
                    n = 1
    out.append({"ttft": first, "seconds": time.time() - t0, "chunks": n})


def round_of(base, k, tokens, seed):
    out, threads = [], []
    t0 = time.time()
    for i in range(k):
        th = threading.Thread(target=stream, args=(base, PROMPTS[(seed + i) % len(PROMPTS)], seed + i, tokens, out))
        th.start()
        threads.append(th)
    for th in threads:
        th.join()
    wall = time.time() - t0
    return k * tokens / wall, [o["ttft"] for o in out]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--wren", default=".build/release/wren")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("-r", "--rounds", type=int, default=3)
    args = ap.parse_args()
    proc, base, _ = start(args.wren, args.model, ["-t", str(args.threads), "--parallel", str(max(args.streams, 1))])
    try:
        round_of(base, 1, 8, 999)  # warm-up
        one, many, ttft_one, ttft_many = [], [], [], []
        for r in range(args.rounds):
            a, t1 = round_of(base, 1, args.tokens, 10 * r)
            b, tn = round_of(base, args.streams, args.tokens, 10 * r + 1)
            one.append(a)
            many.append(b)
            ttft_one += t1
            ttft_many += tn
            print(f"round {r + 1}: 1 stream {a:.1f} tok/s, {args.streams} streams {b:.1f} tok/s total, ratio {b / a:.2f}", flush=True)
        m1, mn = statistics.median(one), statistics.median(many)
        print(f"median: 1 stream {m1:.1f} tok/s, {args.streams} streams {mn:.1f} tok/s total, ratio {mn / m1:.2f} "
              f"({args.tokens} tokens each, {args.threads} threads)")
        q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]
        print(f"time to first token: alone p50 {1000 * statistics.median(ttft_one):.0f} ms; "
              f"under load ({args.streams} streams) p50 {1000 * statistics.median(ttft_many):.0f} ms, p99 {1000 * q(ttft_many, 0.99):.0f} ms")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
