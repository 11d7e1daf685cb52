#!/usr/bin/env python3
"""Expected chat-template renderings, made by Hugging Face transformers'
renderer (the code behind `apply_chat_template`: jinja2 sandbox with
trim_blocks and lstrip_blocks, HF's tojson and raise_exception), for the
templates in Tests/WrenTokenizerTests/Fixtures/chat/*.jinja — SmolLM2's (read
from its GGUF), LLaMA-2-chat, LLaMA-3-instruct, Mistral-instruct,
Qwen2.5-instruct, Gemma-it, Phi-3-mini, Zephyr and deepseek-coder — over
multi-turn conversations with and without a system message.
Writes Tests/WrenTokenizerTests/Fixtures/chat/expected.json.

  pip install transformers jinja2 && python3 tools/make_chat_fixtures.py
"""
import glob, json, os
from transformers.utils.chat_template_utils import render_jinja_template

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
DIR = os.path.join(ROOT, "Tests/WrenTokenizerTests/Fixtures/chat")
TOKENS = {"llama2-chat": ("<s>", "</s>"), "mistral-instruct": ("<s>", "</s>"), "llama3-instruct": ("<|begin_of_text|>", "<|eot_id|>"),
          "gemma-it": ("<bos>", "<eos>"), "phi3-mini": ("<s>", "<|endoftext|>"), "zephyr": ("<s>", "</s>"),
          "qwen2.5-instruct": ("", "<|im_end|>"), "smollm2": ("<|im_start|>", "<|im_end|>"), "deepseek-coder": ("<｜begin▁of▁sentence｜>", "<|EOT|>")}
CONVERSATIONS = {
    "with_system": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "  Paris.  "},
        {"role": "user", "content": "And of Japan? Answer in one word, with \"quotes\" and 'apostrophes' — ünïcödé 日本."},
    ],
    "without_system": [
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hi, how can I help?"},
        {"role": "user", "content": "Tell me a joke.\nMake it short."},
    ],
    "single_turn": [{"role": "user", "content": "2+2?"}],
}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
cases = []
for path in sorted(glob.glob(os.path.join(DIR, "*.jinja"))):
    name = os.path.basename(path)[:-6]
    tmpl = open(path).read()
    bos, eos = TOKENS[name]
    for conv_name, conv in CONVERSATIONS.items():
        for agp in (True, False):
            for tools in ([None, TOOLS] if name == "qwen2.5-instruct" else [None]):
                case = {"template": name, "conversation": conv_name, "add_generation_prompt": agp, "bos_token": bos,
                        "eos_token": eos, "tools": tools}
                try:
                    out = render_jinja_template(conversations=[conv], tools=tools, chat_template=tmpl,
                                                add_generation_prompt=agp, bos_token=bos, eos_token=eos)
                    case["output"] = out[0][0] if isinstance(out, tuple) else out[0]
                except Exception as e:
                    case["error"] = str(e)
                cases.append(case)
json.dump({"reference": "transformers " + __import__("transformers").__version__ + " render_jinja_template",
           "conversations": CONVERSATIONS, "cases": cases}, open(os.path.join(DIR, "expected.json"), "w"), ensure_ascii=False, indent=1)
print(len(cases), "cases;", sum("error" in c for c in cases), "raise an error")
