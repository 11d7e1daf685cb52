#!/usr/bin/env python3
"""A Wren reward model loaded by Hugging Face: LlamaForSequenceClassification + PEFT.

Loads the base (an HF directory, e.g. `wren export MODEL.wren -o DIR`) as
AutoModelForSequenceClassification with one label, attaches the adapter that
`wren reward train` wrote (PEFT reads its LoRA factors and its modules_to_save
"score" head), scores every {"prompt", "response"} line of a JSONL file, and
compares with `wren reward score` on the same lines. The ids are built the way
Wren's paired_text_to_text tokenization builds them: [BOS if the tokenizer adds
it] + prompt + response + EOS, the texts read literally (markup such as
<|im_start|> is not parsed as a special token), and HF pools at the last token that is not the
padding id, as Wren does.

Pass: |r_hf − r_wren| ≤ 1e-3 · max(1, |r_hf|) on every line. Both sides are f32
forwards of the same weights (Wren's exact path); the summation orders differ,
so the rewards differ by ~1e-5 of their size.

  python3 tools/check-reward-peft.py HF_BASE_DIR MODEL.wren REWARD_DIR LINES.jsonl
"""
import json, os, subprocess, sys
import torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
hf_dir, wren_model, reward_dir, lines_path = sys.argv[1:5]
wren = os.environ.get("WREN", os.path.join(ROOT, ".build/release/wren"))

out = subprocess.run([wren, "reward", "score", "-m", wren_model, "--reward", reward_dir, "-i", lines_path],
                     check=True, capture_output=True, text=True).stdout
wren_rewards = [json.loads(l)["reward"] for l in out.splitlines() if l.strip()]

tok = AutoTokenizer.from_pretrained(hf_dir)
base = AutoModelForSequenceClassification.from_pretrained(hf_dir, num_labels=1, torch_dtype=torch.float32)
if base.config.pad_token_id is None:
    base.config.pad_token_id = tok.pad_token_id
model = PeftModel.from_pretrained(base, reward_dir).eval()
head = dict(model.named_parameters())
assert any("score" in k for k in head), "PEFT did not load the score head"

items = [json.loads(l) for l in open(lines_path) if l.strip()]
assert len(items) == len(wren_rewards), (len(items), len(wren_rewards))
worst = 0.0
for it, rw in zip(items, wren_rewards):
    # Wren reads the texts of text2text data literally (special-token markup is not parsed).
    enc = lambda s: tok(s, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    ids = enc(it["prompt"]) + enc(it["response"])
    if getattr(tok, "add_bos_token", False) and tok.bos_token_id is not None:
        ids = [tok.bos_token_id] + ids
    ids = ids + [tok.eos_token_id]
    with torch.no_grad():
        r = model(input_ids=torch.tensor([ids])).logits[0, 0].item()
    d = abs(r - rw) / max(1.0, abs(r))
    worst = max(worst, d)
    print(f"hf {r:+.6f}  wren {rw:+.6f}  rel diff {d:.2e}")
print(f"{len(items)} lines; largest relative difference {worst:.2e} (bound 1e-3): {'PASS' if worst <= 1e-3 else 'FAIL'}")
sys.exit(0 if worst <= 1e-3 else 1)
