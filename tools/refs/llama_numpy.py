"""A float32 llama forward pass in numpy, independent of Wren: weights read
and dequantized with the `gguf` package, GGUF's RoPE convention (adjacent
pairs), grouped-query attention, SwiGLU, tied or separate output head.
No KV cache: every call recomputes the whole sequence (short prompts only)."""
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


class LlamaNumpy:
    def __init__(self, gguf_path):
        r = GGUFReader(gguf_path)
        f = r.fields
        def val(k, default=None):
            if k not in f:
                return default
            return f[k].parts[-1][0].item()
        a = "llama"
        self.dim = int(val(f"{a}.embedding_length"))
        self.layers = int(val(f"{a}.block_count"))
        self.heads = int(val(f"{a}.attention.head_count"))
        self.kv_heads = int(val(f"{a}.attention.head_count_kv", self.heads))
        self.eps = float(np.float32(val(f"{a}.attention.layer_norm_rms_epsilon")))
        self.base = float(val(f"{a}.rope.freq_base", 10000.0))
        self.hd = self.dim // self.heads
        self.rot = int(val(f"{a}.rope.dimension_count", self.hd))
        self.w = {}
        for t in r.tensors:
            shape = [int(x) for x in reversed(t.shape.tolist())]
            self.w[t.name] = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        self.out = self.w.get("output.weight", self.w["token_embd.weight"])

    def rmsnorm(self, x, w):
        ms = np.mean(x.astype(np.float32) ** 2, axis=-1, keepdims=True, dtype=np.float32)
        return (x / np.sqrt(ms + np.float32(self.eps))).astype(np.float32) * w

    def rope(self, x, pos):
        # x: [T, heads, hd]; rotate pairs (2i, 2i+1) of the first `rot` dims.
        i = np.arange(self.rot // 2, dtype=np.float64)
        inv = (self.base ** (-2 * i / self.rot)).astype(np.float32)
        ang = pos[:, None].astype(np.float32) * inv[None, :]          # f32 angles, as Wren computes them
        c, s = np.cos(ang).astype(np.float32)[:, None, :], np.sin(ang).astype(np.float32)[:, None, :]
        x = x.copy()
        a, b = x[..., 0:self.rot:2].copy(), x[..., 1:self.rot:2].copy()
        x[..., 0:self.rot:2] = a * c - b * s
        x[..., 1:self.rot:2] = a * s + b * c
        return x

    def logits(self, ids):
        """Logits at every position, float32, shape [len(ids), vocab]."""
        T = len(ids)
        x = self.w["token_embd.weight"][np.array(ids)]
        pos = np.arange(T)
        mask = np.triu(np.full((T, T), -np.inf, dtype=np.float32), 1)
        g = self.heads // self.kv_heads
        for l in range(self.layers):
            p = f"blk.{l}."
            h = self.rmsnorm(x, self.w[p + "attn_norm.weight"])
            q = (h @ self.w[p + "attn_q.weight"].T).reshape(T, self.heads, self.hd)
            k = (h @ self.w[p + "attn_k.weight"].T).reshape(T, self.kv_heads, self.hd)
            v = (h @ self.w[p + "attn_v.weight"].T).reshape(T, self.kv_heads, self.hd)
            q, k = self.rope(q, pos), self.rope(k, pos)
            k = np.repeat(k, g, axis=1)   # query head h reads kv head h // g
            v = np.repeat(v, g, axis=1)
            att = np.einsum("thd,shd->hts", q, k) / np.float32(np.sqrt(self.hd)) + mask
            att = np.exp(att - att.max(-1, keepdims=True))
            att = (att / att.sum(-1, keepdims=True)).astype(np.float32)
            o = np.einsum("hts,shd->thd", att, v).reshape(T, self.dim)
            x = x + o @ self.w[p + "attn_output.weight"].T
            h = self.rmsnorm(x, self.w[p + "ffn_norm.weight"])
            gt = h @ self.w[p + "ffn_gate.weight"].T
            up = h @ self.w[p + "ffn_up.weight"].T
            x = x + ((gt / (1 + np.exp(-gt))) * up) @ self.w[p + "ffn_down.weight"].T
        x = self.rmsnorm(x, self.w["output_norm.weight"])
        return (x @ self.out.T).astype(np.float32)

    def greedy(self, ids, n):
        ids = list(ids)
        out = []
        for _ in range(n):
            nxt = int(np.argmax(self.logits(ids)[-1]))
            out.append(nxt)
            ids.append(nxt)
        return out
