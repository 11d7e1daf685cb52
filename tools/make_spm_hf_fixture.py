#!/usr/bin/env python3
"""A small SentencePiece-style BPE tokenizer trained with Hugging Face
`tokenizers` and saved as tokenizer.json in the layout of LLaMA-2's
(normalizer Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer, BPE with
byte_fallback and <0xNN> byte tokens), plus the ids HF gives for the test
strings. Wren imports the tokenizer.json and must reproduce the ids.
Writes Tests/WrenTokenizerTests/Fixtures/spm-hf/.

  pip install tokenizers && python3 tools/make_spm_hf_fixture.py
"""
import json, os
from tokenizers import Tokenizer, AddedToken, normalizers, decoders
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
out_dir = os.path.join(ROOT, "Tests/WrenTokenizerTests/Fixtures/spm-hf")
os.makedirs(out_dir, exist_ok=True)
strings = json.load(open(os.path.join(ROOT, "Tests/WrenTokenizerTests/Fixtures/token_ids.json")))["strings"]

corpus = [
    "The quick brown fox jumps over the lazy dog.", "Wren runs language models on a CPU.",
    "Tokenizers split text into pieces; merges join frequent pairs.", "Numbers like 2024 and 3.14 appear too.",
    "def main():\n    print('hello world')\n", "Ein kleiner Text auf Deutsch, mit Umlauten: äöü.",
    "Un petit texte en français, avec des accents : é è à.", "日本語のテキストも少し。", "Emoji 🙂 are rare here.",
] * 50
tok = Tokenizer(BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
bytes_tokens = [f"<0x{b:02X}>" for b in range(256)]
trainer = BpeTrainer(vocab_size=700, special_tokens=["<unk>", "<s>", "</s>"] + bytes_tokens, show_progress=False)
tok.train_from_iterator(corpus, trainer)
tok.save(os.path.join(out_dir, "tokenizer.json"))
json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False},
          open(os.path.join(out_dir, "tokenizer_config.json"), "w"))
ids = [tok.encode(s, add_special_tokens=False).ids for s in strings]
json.dump({"reference": "huggingface tokenizers " + __import__("tokenizers").__version__, "strings": strings, "ids": ids,
           "decoded": [tok.decode(i, skip_special_tokens=False) for i in ids]},
          open(os.path.join(out_dir, "ids.json"), "w"), ensure_ascii=False)
print("wrote", out_dir, tok.get_vocab_size(), "tokens")
