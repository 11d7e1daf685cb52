"""A float32 Gemma 3 forward pass in numpy, independent of Wren, from a GGUF
(weights dequantized with the `gguf` package; llama.cpp's converter stores the
RMSNorm weights as 1 + w, so they multiply directly):
  x = embed(ids)·√dim
  per layer: n = norm(x); q, k, v = n·Wq, n·Wk, n·Wv; q, k = norm per head (QK-norm);
             rotate-half RoPE (base 10000 on sliding-window layers, freq_base on
             global ones); attention scaled by 1/√head_dim, windowed to the last
             `sliding_window` positions on five of every six layers;
             x += norm(o·Wo) (post-attention norm)
             m = norm(x); x += norm(Wdown(gelu_tanh(m·Wgate) · m·Wup)) (post-FFN norm)
  logits = norm(x)·Eᵀ (tied embedding).
No KV cache: every call recomputes the whole sequence (short prompts only)."""
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


class Gemma3Numpy:
    def __init__(self, gguf_path, swa_pattern=6, local_base=10000.0):
        r = GGUFReader(gguf_path)
        f = r.fields
        def val(k, default=None):
            return f[k].parts[-1][0].item() if k in f else default
        a = "gemma3"
        self.dim = int(val(f"{a}.embedding_length"))
        self.layers = int(val(f"{a}.block_count"))
        self.heads = int(val(f"{a}.attention.head_count"))
        self.kv_heads = int(val(f"{a}.attention.head_count_kv", self.heads))
        self.hd = int(val(f"{a}.attention.key_length", self.dim // self.heads))
        self.eps = float(np.float32(val(f"{a}.attention.layer_norm_rms_epsilon")))
        self.base = float(val(f"{a}.rope.freq_base", 1e6))
        self.local_base = local_base
        self.window = int(val(f"{a}.attention.sliding_window", 0))
        self.pattern = swa_pattern
        self.w = {}
        for t in r.tensors:
            shape = [int(x) for x in reversed(t.shape.tolist())]
            self.w[t.name] = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)

    def rmsnorm(self, x, w):
        ms = np.mean(x.astype(np.float32) ** 2, axis=-1, keepdims=True, dtype=np.float32)
        return (x / np.sqrt(ms + np.float32(self.eps))).astype(np.float32) * w

    def rope(self, x, pos, base):
        # x: [T, heads, hd]; rotate (i, i + hd/2) pairs (NEOX / rotate-half).
        half = self.hd // 2
        i = np.arange(half, dtype=np.float64)
        inv = (base ** (-2 * i / self.hd)).astype(np.float32)
        ang = pos[:, None].astype(np.float32) * inv[None, :]
        c, s = np.cos(ang).astype(np.float32)[:, None, :], np.sin(ang).astype(np.float32)[:, None, :]
        a, b = x[..., :half], x[..., half:]
        return np.concatenate([a * c - b * s, a * s + b * c], axis=-1).astype(np.float32)

    def is_local(self, l):
        return self.window > 0 and (l + 1) % self.pattern != 0

    def logits(self, ids, positions=None):
        """Logits [len(positions), vocab] (default: every position), float32."""
        T = len(ids)
        x = self.w["token_embd.weight"][np.array(ids)] * np.float32(np.sqrt(self.dim))
        pos = np.arange(T)
        causal = np.triu(np.full((T, T), -np.inf, dtype=np.float32), 1)
        dist = pos[:, None] - pos[None, :]
        windowed = np.where(dist >= self.window, -np.inf, causal).astype(np.float32) if self.window else causal
        g = self.heads // self.kv_heads
        for l in range(self.layers):
            p = f"blk.{l}."
            local = self.is_local(l)
            h = self.rmsnorm(x, self.w[p + "attn_norm.weight"])
            q = (h @ self.w[p + "attn_q.weight"].T).reshape(T, self.heads, self.hd)
            k = (h @ self.w[p + "attn_k.weight"].T).reshape(T, self.kv_heads, self.hd)
            v = (h @ self.w[p + "attn_v.weight"].T).reshape(T, self.kv_heads, self.hd)
            q = self.rmsnorm(q, self.w[p + "attn_q_norm.weight"])
            k = self.rmsnorm(k, self.w[p + "attn_k_norm.weight"])
            base = self.local_base if local else self.base
            q, k = self.rope(q, pos, base), self.rope(k, pos, base)
            k, v = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
            att = np.einsum("thd,shd->hts", q, k) / np.float32(np.sqrt(self.hd)) + (windowed if local else causal)
            att = np.exp(att - att.max(-1, keepdims=True))
            att = (att / att.sum(-1, keepdims=True)).astype(np.float32)
            o = np.einsum("hts,shd->thd", att, v).reshape(T, self.heads * self.hd)
            x = x + self.rmsnorm(o @ self.w[p + "attn_output.weight"].T, self.w[p + "post_attention_norm.weight"])
            h = self.rmsnorm(x, self.w[p + "ffn_norm.weight"])
            gt = h @ self.w[p + "ffn_gate.weight"].T
            up = h @ self.w[p + "ffn_up.weight"].T
            gelu = 0.5 * gt * (1 + np.tanh(np.float32(np.sqrt(2 / np.pi)) * (gt + np.float32(0.044715) * gt ** 3)))
            x = x + self.rmsnorm(gelu.astype(np.float32) * up @ self.w[p + "ffn_down.weight"].T, self.w[p + "post_ffw_norm.weight"])
        x = self.rmsnorm(x, self.w["output_norm.weight"])
        if positions is not None:
            x = x[positions]
        return (x @ self.w["token_embd.weight"].T).astype(np.float32)
