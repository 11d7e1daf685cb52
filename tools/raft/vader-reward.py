#!/usr/bin/env python3
"""A reward command for `wren raft --reward-cmd`: VADER's compound sentiment
(vaderSentiment from PyPI, a lexicon and rules, no model download) of each
response, in [-1, 1]. Reads JSONL {"prompt", "response"} on stdin, answers
{"reward": r} per line, flushed.

  wren raft ... --reward-cmd "python3 tools/raft/vader-reward.py"
"""
import json, sys
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

vader = SentimentIntensityAnalyzer()
for line in sys.stdin:
    if not line.strip():
        continue
    response = json.loads(line)["response"]
    print(json.dumps({"reward": vader.polarity_scores(response)["compound"]}), flush=True)
