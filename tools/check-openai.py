#!/usr/bin/env python3
"""The official `openai` Python package against `wren serve` (loopback only).

    python3 tools/check-openai.py [-m models/smol.wren] [--wren .build/release/wren]

Starts the server on a free port with the real model, then checks with the
client everyone uses:
  1. models.list() names the served model;
  2. chat.completions.create at temperature 0, whole and streamed
     (stream_options.include_usage): the streamed deltas join to the whole
     text, and the last chunk carries usage;
  3. completions.create with echo and logprobs (as lm-evaluation-harness's
     local-completions scores log-likelihoods): the prompt's tokens come back
     with log-probabilities, the first without one, each at most its position's
     best alternative; the generated token's log-probability equals the same
     token scored inside an echoed prompt within 1e-4 (two kernel paths);
  4. 4 parallel clients get the same greedy texts as 4 sequential ones;
  5. chat logprobs / top_logprobs, n=2 with a seed, and response_format
     json_object (the reply parses as a JSON object);
  6. errors surface as the package's exception types (400, 404, 401).
Exits non-zero on the first failure, saying which.
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading

import openai

from wren_server import start


def check(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")
    print(f"ok: {what}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", default="models/smol.wren")
    ap.add_argument("--wren", default=".build/release/wren")
    args = ap.parse_args()
    keyfile = tempfile.NamedTemporaryFile("w", delete=False)
    keyfile.write("test-key-123\n")
    keyfile.close()
    proc, base, _ = start(args.wren, args.model, ["-t", "2", "--parallel", "4", "--api-key-file", keyfile.name], stderr=subprocess.PIPE)
    try:
        client = openai.OpenAI(base_url=base + "/v1", api_key="test-key-123", max_retries=0, timeout=300)
        name = os.path.splitext(os.path.basename(args.model))[0]

        models = client.models.list()
        check([m.id for m in models.data] == [name], f"models.list() gives [{name}]")

        messages = [{"role": "user", "content": "Name three colors."}]
        whole = client.chat.completions.create(model=name, messages=messages, temperature=0, max_tokens=40)
        text = whole.choices[0].message.content
        check(whole.object == "chat.completion" and text and whole.usage.completion_tokens > 0, "chat completion: " + repr(text[:60]))
        stream = client.chat.completions.create(model=name, messages=messages, temperature=0, max_tokens=40, stream=True,
                                                stream_options={"include_usage": True})
        deltas, usage, finish = [], None, None
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for c in chunk.choices:
                if c.delta.content:
                    deltas.append(c.delta.content)
                if c.finish_reason:
                    finish = c.finish_reason
        check("".join(deltas) == text, "streamed chat text equals the whole response at temperature 0")
        check(usage is not None and usage.completion_tokens == whole.usage.completion_tokens and finish == whole.choices[0].finish_reason,
              "include_usage: usage in the last chunk, same counts and finish reason")

        prompt = "The capital of France is"
        c = client.completions.create(model=name, prompt=prompt, max_tokens=1, temperature=0, echo=True, logprobs=1)
        lp = c.choices[0].logprobs
        check(c.choices[0].text.startswith(prompt) and lp.token_logprobs[0] is None and len(lp.tokens) == len(lp.token_logprobs) >= 2,
              f"completions echo+logprobs: {len(lp.tokens)} tokens, the first without a log-probability")
        check(all(v <= max(t.values()) + 1e-6 for v, t in zip(lp.token_logprobs[1:], lp.top_logprobs[1:])),
              "each token's log-probability is at most its position's best alternative")
        full = c.choices[0].text
        again = client.completions.create(model=name, prompt=full, max_tokens=0, temperature=0, echo=True, logprobs=0)
        a, b = lp.token_logprobs[-1], again.choices[0].logprobs.token_logprobs[-1]
        check(abs(a - b) < 1e-4, f"generated token's log-probability {a:.6f} = rescored in the prompt {b:.6f} (within 1e-4)")
        ids = client.completions.create(model=name, prompt=[[504, 3575, 282, 4649, 314]], max_tokens=3, temperature=0)
        check(len(ids.choices) == 1 and ids.usage.prompt_tokens == 5, "completions from token ids")

        prompts = ["Write a haiku about rain.", "What is 2+2?", "Describe a cat.", "Say hello in French."]
        def ask(p):
            r = client.chat.completions.create(model=name, messages=[{"role": "user", "content": p}], temperature=0, max_tokens=48)
            return r.choices[0].message.content
        sequential = [ask(p) for p in prompts]
        parallel = [None] * 4
        def run(i):
            parallel[i] = ask(prompts[i])
        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(parallel == sequential, "4 parallel clients get the same greedy texts as 4 sequential ones")

        r = client.chat.completions.create(model=name, messages=messages, temperature=0, max_tokens=5, logprobs=True, top_logprobs=3)
        content = r.choices[0].logprobs.content
        check(len(content) >= 1 and all(len(x.top_logprobs) == 3 and x.top_logprobs[0].token == x.token for x in content),
              "chat logprobs: greedy tokens are their position's best of top_logprobs")
        n2 = client.chat.completions.create(model=name, messages=messages, temperature=1, max_tokens=16, n=2, seed=5)
        n2b = client.chat.completions.create(model=name, messages=messages, temperature=1, max_tokens=16, n=2, seed=5)
        check(len(n2.choices) == 2 and [x.message.content for x in n2.choices] == [x.message.content for x in n2b.choices],
              "n=2 with a seed: two choices, reproducible")

        import json as jsonlib
        for seed in range(3):
            j = client.chat.completions.create(model=name, temperature=0.8, seed=seed, max_tokens=200, response_format={"type": "json_object"},
                                               messages=[{"role": "user", "content": "Describe a cat as JSON with keys name, age and color."}])
            content = j.choices[0].message.content
            if j.choices[0].finish_reason == "stop":
                check(isinstance(jsonlib.loads(content), dict), f"response_format json_object (seed {seed}): {content[:70]!r} parses as an object")
            else:
                check(content.lstrip().startswith("{"), f"response_format json_object (seed {seed}) cut at max_tokens: still an object's start")

        try:
            client.chat.completions.create(model=name, messages=messages, temperature=5)
            check(False, "temperature 5 refused")
        except openai.BadRequestError as e:
            check(e.status_code == 400 and "temperature" in str(e), "BadRequestError names the field")
        try:
            client.chat.completions.create(model="no-such-model", messages=messages)
            check(False, "unknown model refused")
        except openai.NotFoundError:
            check(True, "unknown model: NotFoundError")
        try:
            openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0).models.list()
            check(False, "wrong key refused")
        except openai.AuthenticationError:
            check(True, "wrong key: AuthenticationError")
        print("all openai checks passed")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            sys.exit("FAIL: the server did not stop within 30 s of SIGTERM")
        os.unlink(keyfile.name)
        if rc != 0:
            sys.exit(f"FAIL: the server exited {rc} after SIGTERM: {proc.stderr.read()}")


if __name__ == "__main__":
    main()
