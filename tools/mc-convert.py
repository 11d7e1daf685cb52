#!/usr/bin/env python3
"""Convert the multiple-choice sets LMFlow benchmarks on into `wren eval mc`
JSONL ({"context", "choices", "answer"}), with lm-evaluation-harness's prompts:

  medmcqa   JSON/JSONL rows {question, opa, opb, opc, opd, cop}; cop is the
            answer index 0-3 (HF's medmcqa; pass --one-based for 1-4)
            -> "Question: …\\nChoices:\\nA. …\\nB. …\\nC. …\\nD. …\\nAnswer:"  [" A", " B", " C", " D"]
  pubmedqa  JSON (PubMedQA's ori_pqal.json, an object of id -> row) or JSONL rows
            {QUESTION|question, CONTEXTS|contexts: [...], final_decision}
            -> "Abstract: …\\nQuestion: …\\nAnswer:"  [" yes", " no", " maybe"]
  mmlu      CSV rows question,A,B,C,D,answer (MMLU's data/*.csv, no header) or
            JSON/JSONL rows {question, A, B, C, D, answer} (answer a letter or 0-3)
            -> "…\\nA. …\\nB. …\\nC. …\\nD. …\\nAnswer:"  [" A", " B", " C", " D"]

    python3 tools/mc-convert.py medmcqa dev.json -o medmcqa.jsonl
    wren eval mc -m models/smol.wren --data medmcqa.jsonl

Rows that cannot be converted stop the conversion with the file and row.
"""
import argparse, csv, json, sys

LETTERS = ["A", "B", "C", "D"]


def rows(path):
    if path.endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as f:
            return [r for r in csv.reader(f)]
    text = open(path, encoding="utf-8").read()
    try:
        data = json.loads(text)
        if isinstance(data, dict):   # one row, or PubMedQA's object of id -> row
            return [data] if any(k in data for k in ("question", "QUESTION")) else list(data.values())
        return data
    except json.JSONDecodeError:
        return [json.loads(l) for l in text.splitlines() if l.strip()]


def medmcqa(r, one_based):
    q = r["question"]
    opts = [r["opa"], r["opb"], r["opc"], r["opd"]]
    ans = int(r["cop"]) - (1 if one_based else 0)
    ctx = "Question: " + q + "\nChoices:\n" + "".join(f"{l}. {o}\n" for l, o in zip(LETTERS, opts)) + "Answer:"
    return ctx, [" " + l for l in LETTERS], ans


def pubmedqa(r, _):
    q = r.get("QUESTION", r.get("question"))
    ctxs = r.get("CONTEXTS", r.get("contexts"))
    if isinstance(ctxs, dict):
        ctxs = ctxs.get("contexts")
    choices = ["yes", "no", "maybe"]
    ctx = "Abstract: " + " ".join(ctxs) + "\nQuestion: " + q + "\nAnswer:"
    return ctx, [" " + c for c in choices], choices.index(r["final_decision"])


def mmlu(r, _):
    if isinstance(r, list):
        q, a, b, c, d, ans = r
        r = {"question": q, "A": a, "B": b, "C": c, "D": d, "answer": ans}
    ans = r["answer"]
    ans = LETTERS.index(ans.strip().upper()) if isinstance(ans, str) and not ans.strip().isdigit() else int(ans)
    ctx = r["question"].strip() + "\n" + "".join(f"{l}. {r[l]}\n" for l in LETTERS) + "Answer:"
    return ctx, [" " + l for l in LETTERS], ans


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("format", choices=["medmcqa", "pubmedqa", "mmlu"])
    ap.add_argument("input")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--one-based", action="store_true", help="medmcqa: cop is 1-4")
    a = ap.parse_args()
    conv = {"medmcqa": medmcqa, "pubmedqa": pubmedqa, "mmlu": mmlu}[a.format]
    out = []
    for i, r in enumerate(rows(a.input)):
        try:
            ctx, choices, ans = conv(r, a.one_based)
            if not 0 <= ans < len(choices):
                raise ValueError(f"answer {ans} out of range")
        except (KeyError, ValueError, TypeError) as e:
            sys.exit(f"{a.input}: row {i + 1}: cannot convert ({type(e).__name__}: {e})")
        out.append(json.dumps({"context": ctx, "choices": choices, "answer": ans}))
    with open(a.output + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    import os
    os.replace(a.output + ".tmp", a.output)
    print(f"{a.output}: {len(out)} questions")


if __name__ == "__main__":
    main()
