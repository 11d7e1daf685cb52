#!/usr/bin/env python3
"""Reference token ids for Wren's tokenizer tests, made by independent
implementations:

* SmolLM2's byte-level BPE: the vocabulary and merges read from the GGUF with
  the `gguf` package, run by Hugging Face `tokenizers` configured as SmolLM2's
  tokenizer.json is (Digits(individual_digits) + ByteLevel, control tokens as
  special added tokens). The same vocabulary is also run with the GPT-2,
  LLaMA-3 and Qwen2 pre-tokenizer regexes (tokenizers' Oniguruma engine), to
  check Wren's hand-written scanners against a real regex engine.
* Mistral-7B v0.1's SentencePiece model (`mistral_common/data/tokenizer.model.v1`,
  copied to Tests/WrenTokenizerTests/Fixtures): the `sentencepiece` package.

  pip install gguf tokenizers sentencepiece mistral-common
  python3 tools/make_tokenizer_fixtures.py models/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import json, os, sys
import sentencepiece as spm
sys.path.insert(0, os.path.dirname(__file__))
from refs.smollm2_hf import smollm2_tokenizer

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
gguf_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf")

STRINGS = [
    "", " ", "  ", "\n", "\t", "Hello world", "Hello, world!", "hello   world", " leading space", "trailing space ",
    "  two leading", "multiple    inner   spaces", "tabs\tand\ttabs", "line one\nline two\n\nline four", "\r\nwindows\r\n",
    "   \n\n   \n  x", "The year 2024 cost $3.14 (approx. 1,234,567.89).", "1234567890", "007 and 0.5% and -42",
    "I'm don't you'll we've they're she'd it's IT'S DON'T", "'s 't", "!!! ??? ... --- *** ###", "a+b=c; x<=y && z!=w",
    "def foo(x):\n    return x ** 2  # square\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "https://example.com/path?query=1&b=2#frag", "user@example.org", "C:\\Users\\name\\file.txt",
    "你好，世界！这是一个测试。", "日本語のテキストです。カタカナとひらがな。", "한국어 텍스트입니다.", "مرحبا بالعالم",
    "नमस्ते दुनिया", "Привет, мир! Ёжик.", "Ελληνικά κείμενα", "emoji 😀🤗🎉 and ZWJ 👩‍👩‍👧‍👦 and flags 🇫🇷🇯🇵 and skin 👍🏽",
    "combining: e\u0301 a\u0308 n\u0303 vs é ä ñ", "naïve café résumé façade", "ﬁ ligature and ½ fraction and ² superscript and Ⅻ",
    "\u00a0non-breaking\u00a0space and\u2003em space and\u3000ideographic", "zero\u200bwidth",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>", "text<|endoftext|>more", "<|im_start|><|im_end|>",
    "<|im_startx|> not a marker", "MiXeD CaSe WoRdS", "ALLCAPS", "snake_case_name and camelCaseName",
    "A" * 300, "ab" * 150, " " * 40 + "x", "\n" * 5, "The quick brown fox jumps over the lazy dog. " * 3,
    "Ω≈ç√∫˜µ≤≥÷ åß∂ƒ©˙∆˚¬…æ", "\u0000null\u0001ctrl\u007f", "¡Hola! ¿Qué tal?", "x\u2028y\u2029z",
]

out = {"strings": STRINGS, "smollm2": {}, "mistral": {}}
for pre in ["smollm", "gpt2", "llama3", "qwen2"]:
    tok = smollm2_tokenizer(gguf_path, pre)
    out["smollm2"][pre] = [tok.encode(s, add_special_tokens=False).ids for s in STRINGS]
    if pre == "smollm":
        tok.encode_special_tokens = True
        out["smollm2"]["smollm_no_special"] = [tok.encode(s, add_special_tokens=False).ids for s in STRINGS]
        tok.encode_special_tokens = False
        dec = [tok.decode(ids, skip_special_tokens=False) for ids in out["smollm2"]["smollm"]]
        assert dec == STRINGS, [(a, b) for a, b in zip(dec, STRINGS) if a != b][:3]
sp = spm.SentencePieceProcessor(model_file=os.path.join(ROOT, "Tests/WrenTokenizerTests/Fixtures/mistral-7b-v0.1.tokenizer.model"))
out["mistral"]["ids"] = [sp.encode(s) for s in STRINGS]
out["mistral"]["decoded"] = [sp.decode(ids) for ids in out["mistral"]["ids"]]
out["reference"] = {"smollm2": "huggingface tokenizers " + __import__("tokenizers").__version__,
                    "mistral": "sentencepiece " + spm.__version__}
dst = os.path.join(ROOT, "Tests/WrenTokenizerTests/Fixtures/token_ids.json")
with open(dst, "w") as f:
    json.dump(out, f, ensure_ascii=False, indent=0)
print("wrote", dst, len(STRINGS), "strings")
