#!/usr/bin/env python3
"""The per-slot prefix cache of `wren serve`, seen from outside (loopback only):
a three-turn chat on a ~600-token first message; after each turn, the prompt
tokens of the request and how many of them the server evaluated (from
/metrics), and the request's wall time.

    python3 tools/serve-prefix-cache.py [-m models/smol.wren] [--wren .build/release/wren]
"""
import argparse
import json
import signal
import time
import urllib.request

from wren_server import start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", default="models/smol.wren")
    ap.add_argument("--wren", default=".build/release/wren")
    args = ap.parse_args()
    proc, base, _ = start(args.wren, args.model, ["-t", "2", "--metrics"])
    try:
        def metric(name):
            m = urllib.request.urlopen(base + "/metrics").read().decode()
            return float(next(l for l in m.splitlines() if l.startswith(name + " ")).split()[1])

        story = "Here is a long story. " + " ".join(f"Sentence number {i} tells about a different animal in the forest." for i in range(40))
        messages = [{"role": "user", "content": story + " Summarize it in one sentence."}]
        for turn in range(3):
            e0, p0 = metric("wren_prompt_tokens_evaluated_total"), metric("wren_prompt_tokens_total")
            body = json.dumps({"messages": messages, "temperature": 0, "max_tokens": 24}).encode()
            t0 = time.time()
            reply = json.load(urllib.request.urlopen(urllib.request.Request(base + "/v1/chat/completions", data=body,
                                                                           headers={"Content-Type": "application/json"})))
            dt = time.time() - t0
            e1, p1 = metric("wren_prompt_tokens_evaluated_total"), metric("wren_prompt_tokens_total")
            print(f"turn {turn + 1}: prompt {int(p1 - p0)} tokens, {int(e1 - e0)} evaluated, {1000 * dt:.0f} ms")
            messages += [{"role": "assistant", "content": reply["choices"][0]["message"]["content"]},
                         {"role": "user", "content": "And again, shorter?"}]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
