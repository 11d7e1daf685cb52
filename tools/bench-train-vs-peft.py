#!/usr/bin/env python3
"""Training speed and memory, Wren against PyTorch + PEFT, side by side.

Both sides train the same model (the default q4_1 SmolLM2 dequantized to f32;
Wren's QLoRA row keeps the q4_1 file), on the same packed text (this repo's
Swift sources, text_only, blocks of --block tokens), with the same batch, LoRA
rank/alpha/targets, AdamW, and thread count. Runs alternate; each reports
training tokens/s over steps 2..N (the first step is warm-up) and the peak RSS
of its whole process. Prints medians and the ratio Wren / PyTorch.

    pip install torch peft transformers   # torch CPU wheel
    python3 tools/bench-train-vs-peft.py [--steps 6] [-r 3] [--threads 2]

With --ab OTHER_WREN (a wren binary built from another commit) it runs no
PyTorch: it alternates this tree's wren and OTHER_WREN on each row, the A/B
of a restructuring (needs no torch):

    python3 tools/bench-train-vs-peft.py --ab /tmp/old/.build/release/wren --rows lora,qlora
"""
import argparse, csv, glob, json, os, resource, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WREN = os.path.join(ROOT, ".build", "release", "wren")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def torch_worker(a):
    """Runs in a child process: PyTorch + PEFT LoRA training; prints one JSON line."""
    import torch
    from peft import LoraConfig, get_peft_model
    from tokenizers import Tokenizer
    from transformers import LlamaForCausalLM
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    tok = Tokenizer.from_file(os.path.join(a.hf, "tokenizer.json"))
    texts = [t["text"] for t in json.load(open(os.path.join(a.data, "code.json")))["instances"]]
    eos = json.load(open(os.path.join(a.hf, "config.json"))).get("eos_token_id", 0)
    ids = []
    for t in texts:
        ids += tok.encode(t, add_special_tokens=False).ids + [eos]
    blocks = [ids[i:i + a.block] for i in range(0, len(ids) - a.block + 1, a.block)]
    model = LlamaForCausalLM.from_pretrained(a.hf, torch_dtype=torch.float32)
    if a.mode == "full":
        params = model.parameters()
    else:
        cfg = LoraConfig(r=a.rank, lora_alpha=a.alpha, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")
        model = get_peft_model(model, cfg)
        params = [p for p in model.parameters() if p.requires_grad]
    if a.checkpointing:
        model.gradient_checkpointing_enable()
        if a.mode != "full":
            model.enable_input_require_grads()
    model.train()
    opt = torch.optim.AdamW(params, lr=2e-4)
    times = []
    for s in range(a.steps):
        batch = torch.tensor(blocks[(s * a.batch) % len(blocks):][:a.batch])
        if batch.shape[0] < a.batch:
            batch = torch.tensor(blocks[:a.batch])
        out = model(input_ids=batch, labels=batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params if a.mode != "full" else model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        times.append(time.time())
    tokens = (a.steps - 1) * a.batch * a.block
    print(json.dumps({"tokens_per_s": tokens / (times[-1] - times[0]), "loss": out.loss.item()}))


def timed(cmd):
    """Runs cmd under /usr/bin/time -v; returns (stdout, stderr, peak RSS MB)."""
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    rss = 0
    for line in p.stderr.splitlines():
        if "Maximum resident set size" in line:
            rss = int(line.split()[-1]) / 1024
    return p.stdout, p.stderr, rss


def wren_rate(outdir, batch, block):
    rows = list(csv.DictReader(open(os.path.join(outdir, "loss.csv"))))
    secs = [float(r["seconds"]) for r in rows]
    tokens = sum(int(r["tokens"]) for r in rows[1:])
    return tokens / (secs[-1] - secs[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("-r", "--repetitions", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=int, default=16)
    ap.add_argument("--rows", default="lora,lora-ckpt,qlora,full", help="comma list of lora, lora-ckpt, qlora, full")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "smol.wren"))
    ap.add_argument("--work", default=os.path.join(ROOT, ".build", "bench-train"))
    ap.add_argument("--ab", metavar="OTHER_WREN", help="alternate with this wren binary instead of PyTorch")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--hf"); ap.add_argument("--data"); ap.add_argument("--mode", default="lora")
    ap.add_argument("--checkpointing", action="store_true")
    a = ap.parse_args()
    if a.worker:
        return torch_worker(a)

    os.makedirs(a.work, exist_ok=True)
    hf = os.path.join(a.work, "hf-f32")
    f32 = os.path.join(a.work, "smol-f32.wren")
    if not os.path.exists(os.path.join(hf, "model.safetensors")):
        subprocess.run([WREN, "export", a.model, "-o", hf, "--type", "f32", "--force"], check=True, capture_output=True)
    if not os.path.exists(f32):
        subprocess.run([WREN, "convert", hf, "-o", f32, "--type", "f32"], check=True, capture_output=True)
    data = os.path.join(a.work, "data")
    os.makedirs(data, exist_ok=True)
    texts = [open(f).read() for f in sorted(glob.glob(os.path.join(ROOT, "Sources", "**", "*.swift"), recursive=True))]
    json.dump({"type": "text_only", "instances": [{"text": t} for t in texts]}, open(os.path.join(data, "code.json"), "w"))

    rows = a.rows.split(",")
    if a.ab:
        return ab(a, rows, f32, data)
    results = {r: {"wren": [], "torch": [], "wren_rss": [], "torch_rss": []} for r in rows}
    for rep in range(a.repetitions):
        for row in rows:
            ckpt = row == "lora-ckpt"
            out = tempfile.mkdtemp(dir=a.work)
            _, _, rss = timed(wren_cmd(WREN, a, row, f32, data, out))
            results[row]["wren"].append(wren_rate(out, a.batch, a.block))
            results[row]["wren_rss"].append(rss)
            subprocess.run(["rm", "-rf", out])
            if row == "qlora":
                continue  # PyTorch's side of QLoRA (bitsandbytes) needs a GPU; compared with its f32 LoRA row
            tcmd = [sys.executable, __file__, "--worker", "--hf", hf, "--data", data, "--mode", "full" if row == "full" else "lora",
                    "--threads", str(a.threads), "--batch", str(a.batch), "--block", str(a.block), "--steps", str(a.steps),
                    "--rank", str(a.rank), "--alpha", str(a.alpha)] + (["--checkpointing"] if ckpt else [])
            so, _, trss = timed(tcmd)
            results[row]["torch"].append(json.loads(so.strip().splitlines()[-1])["tokens_per_s"])
            results[row]["torch_rss"].append(trss)
            print(f"rep {rep + 1} {row}: wren {results[row]['wren'][-1]:.1f} tok/s {rss:.0f} MB, "
                  f"torch {results[row]['torch'][-1]:.1f} tok/s {trss:.0f} MB", file=sys.stderr)
        if "qlora" in rows:
            print(f"rep {rep + 1} qlora: wren {results['qlora']['wren'][-1]:.1f} tok/s {results['qlora']['wren_rss'][-1]:.0f} MB", file=sys.stderr)

    med = statistics.median
    print(f"\nbatch {a.batch} x {a.block} tokens, LoRA r={a.rank} alpha={a.alpha} on all seven projections, AdamW, {a.threads} threads, "
          f"{a.steps} steps (rate over steps 2..{a.steps}), medians of {a.repetitions}")
    print(f"{'row':10} {'wren tok/s':>10} {'torch tok/s':>11} {'speed ratio':>11} {'wren MB':>8} {'torch MB':>9} {'memory ratio':>12}")
    for row in rows:
        r = results[row]
        w, wm = med(r["wren"]), med(r["wren_rss"])
        if r["torch"]:
            t, tm = med(r["torch"]), med(r["torch_rss"])
            print(f"{row:10} {w:10.1f} {t:11.1f} {w / t:11.2f} {wm:8.0f} {tm:9.0f} {wm / tm:12.2f}")
        else:
            print(f"{row:10} {w:10.1f} {'-':>11} {'-':>11} {wm:8.0f} {'-':>9} {'-':>12}")


def wren_cmd(wren, a, row, f32, data, out):
    model = a.model if row == "qlora" else f32
    cmd = [wren, "finetune", "-m", model, "--data", data, "-o", out, "--block-size", str(a.block), "--batch-size", str(a.batch),
           "--max-steps", str(a.steps), "-t", str(a.threads), "--lr", "2e-4"]
    cmd += ["--full"] if row == "full" else ["--lora-r", str(a.rank), "--lora-alpha", str(a.alpha), "--lora-targets", "all"]
    return cmd + (["--grad-checkpointing"] if row == "lora-ckpt" else [])


def ab(a, rows, f32, data):
    """This tree's wren against another build, alternating; the order flips every repetition."""
    res = {(r, w): [] for r in rows for w in ("this", "other")}
    for rep in range(a.repetitions):
        for row in rows:
            order = [("this", WREN), ("other", a.ab)]
            for name, wren in (order if rep % 2 == 0 else order[::-1]):
                out = tempfile.mkdtemp(dir=a.work)
                _, _, rss = timed(wren_cmd(wren, a, row, f32, data, out))
                res[(row, name)].append(wren_rate(out, a.batch, a.block))
                subprocess.run(["rm", "-rf", out])
                print(f"rep {rep + 1} {row} {name}: {res[(row, name)][-1]:.1f} tok/s {rss:.0f} MB", file=sys.stderr)
    med = statistics.median
    print(f"\n{'row':10} {'this tok/s':>10} {'other tok/s':>11} {'ratio':>6}   (medians of {a.repetitions}, {a.threads} threads)")
    for row in rows:
        t, o = med(res[(row, "this")]), med(res[(row, "other")])
        print(f"{row:10} {t:10.1f} {o:11.1f} {t / o:6.2f}")


if __name__ == "__main__":
    main()
