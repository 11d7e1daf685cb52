#!/usr/bin/env python3
"""Soak test of `wren serve` on 127.0.0.1 only, bounded in time.

    python3 tools/soak-serve.py -m models/smol.wren [--minutes 3] [--clients 6] [--parallel 4]

Starts the server, then runs --clients workers for --minutes. Each worker loops
over a random mix of:
  - streamed chat completions, a third of them abandoned mid-stream (the socket
    closed after a few events: the server must cancel and free the slot);
  - whole completions, some with echo + logprobs, some with n = 2;
  - malformed requests: broken JSON, wrong types, unknown fields, a body over
    the limit, bytes that are not HTTP, a wrong model name.
At the end it checks the server is healthy with no slot busy, and prints
requests, responses by status and error kind, p50/p99 time to first token,
tokens/s, and the server's RSS at start (ready, after a warm-up) and at the end.
Exits non-zero if the server died, answered 5xx, leaked a slot, or its RSS
grew by more than --max-growth MB (default 64). Standard library only.
"""
import argparse
import collections
import http.client
import json
import random
import signal
import socket
import statistics
import sys
import threading
import time

from wren_server import start

PROMPTS = ["Tell me a joke.", "What is the capital of Italy?", "Write a poem about the sea.", "Explain gravity simply.",
           "List five fruits.", "How do I boil an egg?", "Describe a sunset.", "What is a prime number?"]


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.kinds = collections.Counter()
        self.ttft = []
        self.rates = []
        self.tokens = 0

    def add(self, kind):
        with self.lock:
            self.kinds[kind] += 1


def post(port, path, body, timeout=300):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    c.request("POST", path, body=data, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    out = r.read()
    c.close()
    return r.status, out


def stream_chat(port, stats, rng, abandon):
    body = {"messages": [{"role": "user", "content": rng.choice(PROMPTS)}], "max_tokens": rng.randint(16, 96),
            "temperature": 0.8, "seed": rng.randint(0, 1 << 30), "stream": True}
    s = socket.create_connection(("127.0.0.1", port), timeout=300)
    data = json.dumps(body).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
              + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    t0 = time.time()
    first, events, buf = None, 0, b""
    stop_after = rng.randint(1, 6) if abandon else None
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
        if b'"content"' in chunk and first is None and b'"content":""' not in chunk:
            first = time.time() - t0
        events = buf.count(b"data: ")
        if stop_after is not None and events >= stop_after:
            s.close()
            stats.add("stream abandoned")
            return
    s.close()
    status = int(buf.split(b" ", 2)[1]) if buf.startswith(b"HTTP/1.1") else 0
    if status != 200 or b"data: [DONE]" not in buf:
        stats.add(f"stream status {status}" + ("" if b"[DONE]" in buf else " without [DONE]"))
        return
    stats.add("stream 200")
    tokens = buf.count(b'"delta":{"content"')
    with stats.lock:
        if first is not None:
            stats.ttft.append(first)
        dt = time.time() - t0
        stats.tokens += tokens
        if tokens > 1 and first is not None and dt > first:
            stats.rates.append((tokens - 1) / (dt - first))


def whole(port, stats, rng):
    body = {"prompt": rng.choice(PROMPTS), "max_tokens": rng.randint(1, 48), "temperature": rng.choice([0, 0.7])}
    if rng.random() < 0.3:
        body.update(echo=True, logprobs=2)
    if rng.random() < 0.2:
        body["n"] = 2
    status, out = post(port, "/v1/completions", body)
    stats.add(f"completion {status}")
    if status == 200:
        o = json.loads(out)
        with stats.lock:
            stats.tokens += o["usage"]["completion_tokens"]


MALFORMED = [
    (b"{not json", 400), (b"[]", 400), (b'{"prompt": 5}', 400), (b'{"prompt": "a", "temperature": "x"}', 400),
    (b'{"prompt": "a", "bogus": true}', 400), (b'{"prompt": "a", "max_tokens": -1}', 400),
    (b'{"prompt": "a", "model": "nope"}', 404), (b'{"messages": []}', None), (b'{"prompt": [1, 2, 99999999]}', 400),
]


def malformed(port, stats, rng, max_body):
    kind = rng.random()
    if kind < 0.15:
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))) + b"\r\n\r\n")
        try:
            s.recv(4096)
        except OSError:
            pass
        s.close()
        stats.add("garbage bytes")
        return
    if kind < 0.25:
        status, _ = post(port, "/v1/completions", b'{"prompt": "' + b"a" * (max_body + 10) + b'"}')
        stats.add(f"oversized {status}")
        return
    body, want = rng.choice(MALFORMED)
    path = "/v1/chat/completions" if b"messages" in body else "/v1/completions"
    status, out = post(port, path, body)
    ok = (want is None and 400 <= status < 500) or status == want
    try:
        shaped = "message" in json.loads(out)["error"]
    except Exception:
        shaped = False
    stats.add(f"malformed {status}" + ("" if ok and shaped else " UNEXPECTED"))


def worker(port, stats, rng, deadline, max_body):
    while time.time() < deadline:
        r = rng.random()
        try:
            if r < 0.45:
                stream_chat(port, stats, rng, abandon=rng.random() < 0.33)
            elif r < 0.75:
                whole(port, stats, rng)
            else:
                malformed(port, stats, rng, max_body)
        except Exception as e:
            stats.add(f"client error {type(e).__name__}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--wren", default=".build/release/wren")
    ap.add_argument("--minutes", type=float, default=3)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--max-growth", type=float, default=64, help="MB of RSS growth allowed")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    max_body = 65536
    proc, _, port = start(args.wren, args.model, ["-t", str(args.threads), "--parallel", str(args.parallel), "--max-body", str(max_body),
                                                  "--metrics", "-c", "1024"])
    stats = Stats()
    # Warm-up: every slot used once, so the KV cache's pages are touched before the first reading.
    threads = [threading.Thread(target=whole, args=(port, Stats(), random.Random(i))) for i in range(args.parallel)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    rss0 = rss_mb(proc.pid)
    t0 = time.time()
    deadline = t0 + 60 * args.minutes
    threads = [threading.Thread(target=worker, args=(port, stats, random.Random(args.seed * 1000 + i), deadline, max_body))
               for i in range(args.clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    wall = time.time() - t0
    time.sleep(1.0)
    failures = []
    if proc.poll() is not None:
        failures.append(f"the server exited with {proc.returncode}")
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/metrics")
        metrics = c.getresponse().read().decode()
        busy = [l for l in metrics.splitlines() if l.startswith("wren_slots_busy ")]
        if busy != ["wren_slots_busy 0"]:
            failures.append(f"slots still busy after the load: {busy}")
    rss1 = rss_mb(proc.pid) if proc.poll() is None else float("nan")
    total = sum(stats.kinds.values())
    print(f"{total} requests in {wall:.0f} s from {args.clients} clients on {args.parallel} slots")
    for k, v in sorted(stats.kinds.items()):
        print(f"  {k:32s} {v}")
    if stats.ttft:
        q = sorted(stats.ttft)
        print(f"time to first token: p50 {1000 * statistics.median(q):.0f} ms, p99 {1000 * q[min(len(q) - 1, int(0.99 * len(q)))]:.0f} ms "
              f"({len(q)} finished streams)")
    if stats.rates:
        print(f"per-stream decode: median {statistics.median(stats.rates):.1f} tokens/s; {stats.tokens / wall:.1f} tokens/s generated in all")
    print(f"server RSS: {rss0:.1f} MB after warm-up, {rss1:.1f} MB at the end ({rss1 - rss0:+.1f} MB)")
    bad = [k for k in stats.kinds if "UNEXPECTED" in k or " 5" in k or "without [DONE]" in k]
    if bad:
        failures.append("unexpected answers: " + ", ".join(bad))
    if rss1 - rss0 > args.max_growth:
        failures.append(f"RSS grew by {rss1 - rss0:.1f} MB (> {args.max_growth})")
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=60)
    if rc != 0:
        failures.append(f"exit code {rc} after SIGTERM")
    if failures:
        sys.exit("FAIL: " + "; ".join(failures))
    print("soak passed")


if __name__ == "__main__":
    main()
