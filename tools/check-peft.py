#!/usr/bin/env python3
"""Adapters interoperate with PyTorch + PEFT, both ways, checked on logits.

1. Wren trains a LoRA adapter (all seven projections, so the q/k row
   permutation is exercised) on the f32 SmolLM2; transformers + peft load the
   base (exported by `wren export`) and the adapter; both evaluate the same
   token ids; we compare the top-20 logits at every position.
2. PEFT creates an adapter with random A and B (rsLoRA scaling, r=4), saves
   it; Wren applies it with `wren logits --lora` and we compare again.
3. and 4. The same both ways with trainable token rows (PEFT's
   `trainable_token_indices`) on a model whose vocabulary `wren vocab extend`
   grew by 6 tokens (all the example data supports): `wren finetune --train-new-tokens`, and a PEFT adapter
   with random rows for those ids. The prompts then contain the new tokens.

Tolerance: max |Wren − PyTorch| ≤ 2e-3 on logits of magnitude ~10–30. Both
sides compute in float32; they differ only in summation order (≈1e-6 relative
per product, accumulated over 30 layers), while the adapters move the logits
by 0.1–10, so a wrong permutation, scale or transpose shows as errors 100×
the bound.

    pip install torch peft transformers
    python3 tools/check-peft.py
"""
import json, os, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WREN = os.path.join(ROOT, ".build", "release", "wren")
WORK = os.path.join(ROOT, ".build", "check-peft")
PROMPTS = ["The capital of France is", "def fibonacci(n):\n    return", "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"]
TOL = 2e-3


def sh(*cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return p.stdout


def wren_logits(model, text, adapter=None):
    cmd = [WREN, "logits", "-m", model, "--exact", "--top", "20", "--all-positions", "--json", "-t", "2", text]
    if adapter:
        cmd += ["--lora", adapter]
    return json.loads(sh(*cmd))


def compare(name, model_t, f32, adapter, base_t=None):
    import torch
    worst, moved, new_inputs = 0.0, 0.0, 0
    for text in PROMPTS:
        w = wren_logits(f32, text, adapter)
        new_inputs += sum(1 for t in w["tokens"] if t >= 49152)
        ids = torch.tensor([w["tokens"]])
        with torch.no_grad():
            logits = model_t(input_ids=ids).logits[0]
            base = base_t(input_ids=ids).logits[0] if base_t is not None else None
        for p, top in enumerate(w["positions"]):
            for tid, val in top:
                worst = max(worst, abs(val - logits[p, tid].item()))
                if base is not None:
                    moved = max(moved, abs(logits[p, tid].item() - base[p, tid].item()))
    ok = worst <= TOL
    print(f"{name}: max |Wren − PEFT| over top-20 logits at every position of {len(PROMPTS)} prompts = {worst:.2e} "
          f"(adapter moves logits by up to {moved:.2f}; {new_inputs} input tokens from an extended vocabulary) {'OK' if ok else 'FAIL'}")
    return ok


def main():
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import LlamaForCausalLM
    torch.set_num_threads(2)
    os.makedirs(WORK, exist_ok=True)
    hf, f32 = os.path.join(WORK, "hf-f32"), os.path.join(WORK, "smol-f32.wren")
    if not os.path.exists(os.path.join(hf, "model.safetensors")):
        sh(WREN, "export", os.path.join(ROOT, "models", "smol.wren"), "-o", hf, "--type", "f32", "--force")
    if not os.path.exists(f32):
        sh(WREN, "convert", hf, "-o", f32, "--type", "f32")

    # 1. Wren-trained adapter into PEFT.
    adapter = os.path.join(WORK, "wren-adapter")
    sh("rm", "-rf", adapter)
    sh(WREN, "finetune", "-m", f32, "--data", os.path.join(ROOT, "examples", "sentiment", "train.json"), "-o", adapter,
       "--lora-targets", "all", "--lora-r", "8", "--lora-alpha", "16", "--lr", "2e-3", "--max-steps", "8", "--batch-size", "4", "-t", "2")
    base = LlamaForCausalLM.from_pretrained(hf, torch_dtype=torch.float32).eval()
    ref = LlamaForCausalLM.from_pretrained(hf, torch_dtype=torch.float32).eval()
    peft_model = PeftModel.from_pretrained(base, adapter).eval()
    ok1 = compare("Wren adapter in PEFT", peft_model, f32, adapter, ref)

    # 2. PEFT-made adapter into Wren.
    model = LlamaForCausalLM.from_pretrained(hf, torch_dtype=torch.float32)
    cfg = LoraConfig(r=4, lora_alpha=8, use_rslora=True, init_lora_weights=False,
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], task_type="CAUSAL_LM")
    pm = get_peft_model(model, cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    pm.eval()
    made = os.path.join(WORK, "peft-adapter")
    pm.save_pretrained(made)
    ok2 = compare("PEFT adapter in Wren", pm, f32, made, ref)

    # 3. Trainable token rows on an extended vocabulary, Wren-trained into PEFT.
    data = os.path.join(ROOT, "examples", "sentiment", "train.json")
    ext, ext_hf = os.path.join(WORK, "smol-ext.wren"), os.path.join(WORK, "hf-ext")
    sh(WREN, "vocab", "extend", "-m", f32, "--data", data, "--new-tokens", "6", "-o", ext, "--force")
    sh(WREN, "export", ext, "-o", ext_hf, "--force")
    tt = os.path.join(WORK, "wren-tokens-adapter")
    sh("rm", "-rf", tt)
    sh(WREN, "finetune", "-m", ext, "--data", data, "-o", tt, "--train-new-tokens", "--lora-targets", "q,v", "--lr", "2e-2",
       "--max-steps", "6", "--batch-size", "4", "-t", "2")
    global PROMPTS
    PROMPTS = PROMPTS + ["Classify this review with our internal code.\nReview: The museum was boring.",
                         "Review: a warm, funny and moving film. Classify this review with our internal code."]
    ext_ref = LlamaForCausalLM.from_pretrained(ext_hf, torch_dtype=torch.float32).eval()
    tt_model = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(ext_hf, torch_dtype=torch.float32), tt).eval()
    ok3 = compare("Wren adapter with trainable tokens in PEFT", tt_model, ext, tt, ext_ref)

    # 4. A PEFT adapter with random rows for the new tokens, into Wren.
    new_ids = list(range(49152, 49152 + 6))
    cfg = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], trainable_token_indices=new_ids, task_type="CAUSAL_LM")
    pm = get_peft_model(LlamaForCausalLM.from_pretrained(ext_hf, torch_dtype=torch.float32), cfg)
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "trainable_tokens_delta" in n:
                p.add_(torch.randn_like(p) * 0.05)
    pm.eval()
    made = os.path.join(WORK, "peft-tokens-adapter")
    pm.save_pretrained(made)
    ok4 = compare("PEFT adapter with trainable tokens in Wren", pm, ext, made, ext_ref)
    sys.exit(0 if ok1 and ok2 and ok3 and ok4 else 1)


if __name__ == "__main__":
    main()
