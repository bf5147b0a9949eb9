"""An independent Llama forward pass in numpy, on a GGUF file's own tensors.

It reads the tensors as llama.cpp stores them (q/k rows permuted for RoPE
on adjacent pairs) and rotates adjacent pairs as llama.cpp does, so it
shares nothing with `keras_lowrank.models.gguf_folder` (which un-permutes for
Hugging Face's rotate-half RoPE) nor with keras-hub: if the un-permutation
were wrong, Keras on the converted folder would disagree with this.

Float64 throughout: RMSNorm, RoPE, grouped-query attention, SwiGLU.
"""

import numpy as np


class NumpyLlama:
    """Greedy decoding with a KV cache over a GGUF file's dequantized tensors.

    Args:
        gguf_path: str. A Llama-architecture GGUF file.
    """

    def __init__(self, gguf_path):
        import gguf

        reader = gguf.GGUFReader(gguf_path)
        field = lambda name: reader.fields[name].contents()  # noqa: E731
        self.layers = int(field("llama.block_count"))
        self.heads = int(field("llama.attention.head_count"))
        self.kv_heads = int(field("llama.attention.head_count_kv"))
        self.eps = float(field("llama.attention.layer_norm_rms_epsilon"))
        self.theta = float(field("llama.rope.freq_base"))
        # Matrices as (in, out), contiguous: numpy's float64 x @ W.T is ~7x
        # slower than x @ W_t.
        self.w = {}
        for t in reader.tensors:
            array = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
            if array.ndim == 2 and t.name.startswith("blk."):
                array = np.ascontiguousarray(array.T)
            self.w[t.name] = array
        self.hidden = self.w["token_embd.weight"].shape[1]
        self.head_dim = self.hidden // self.heads
        output = self.w.get("output.weight", self.w["token_embd.weight"])
        self.output_t = np.ascontiguousarray(output.T)  # (hidden, vocab)

    def _norm(self, x, scale):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * scale

    def _rope(self, x, positions):
        # x: (seq, heads, head_dim); llama.cpp "normal" mode rotates the
        # adjacent pairs (2i, 2i + 1) by position * theta^(-2i / head_dim).
        inv = self.theta ** (-np.arange(0, self.head_dim, 2) / self.head_dim)
        angle = positions[:, None] * inv[None, :]  # (seq, head_dim / 2)
        cos, sin = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]
        even, odd = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = even * cos - odd * sin
        out[..., 1::2] = even * sin + odd * cos
        return out

    def forward(self, token_ids, cache=None):
        """Logits (seq, vocab) of `token_ids` after the cached ones.

        `cache` is a list with one `[keys, values]` pair per layer, each
        (cached_seq, kv_heads, head_dim), extended in place.
        """
        if cache is None:
            cache = [[np.zeros((0, self.kv_heads, self.head_dim))] * 2
                     for _ in range(self.layers)]
        start = cache[0][0].shape[0]
        seq = len(token_ids)
        positions = np.arange(start, start + seq, dtype=np.float64)
        x = self.w["token_embd.weight"][np.asarray(token_ids)]  # (seq, hidden)
        group = self.heads // self.kv_heads
        for i in range(self.layers):
            w = lambda name: self.w[f"blk.{i}.{name}.weight"]  # noqa: E731
            h = self._norm(x, w("attn_norm"))
            q = (h @ w("attn_q")).reshape(seq, self.heads, self.head_dim)
            k = (h @ w("attn_k")).reshape(seq, self.kv_heads, self.head_dim)
            v = (h @ w("attn_v")).reshape(seq, self.kv_heads, self.head_dim)
            q, k = self._rope(q, positions), self._rope(k, positions)
            cache[i][0] = keys = np.concatenate([cache[i][0], k])
            cache[i][1] = values = np.concatenate([cache[i][1], v])
            keys = np.repeat(keys, group, axis=1)  # (total, heads, head_dim)
            values = np.repeat(values, group, axis=1)
            scores = np.einsum("qhd,khd->hqk", q, keys) / np.sqrt(self.head_dim)
            total = keys.shape[0]
            allowed = positions[:, None] >= np.arange(total)[None, :]
            scores = np.where(allowed[None], scores, -np.inf)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            attended = np.einsum("hqk,khd->qhd", scores, values).reshape(seq, -1)
            x = x + attended @ w("attn_output")
            h = self._norm(x, w("ffn_norm"))
            gate = h @ w("ffn_gate")
            x = x + ((gate / (1 + np.exp(-gate))) * (h @ w("ffn_up"))) @ w("ffn_down")
        return self._norm(x, self.w["output_norm.weight"]) @ self.output_t, cache

    def greedy(self, prompt_ids, max_new_tokens):
        """The `max_new_tokens` greedy tokens after `prompt_ids`."""
        logits, cache = self.forward(prompt_ids)
        tokens = [int(np.argmax(logits[-1]))]
        while len(tokens) < max_new_tokens:
            logits, cache = self.forward([tokens[-1]], cache)
            tokens.append(int(np.argmax(logits[-1])))
        return tokens


def run_single_threaded(gguf_path, logit_prompts, greedy_prompts, new_tokens):
    """Last-position logits and greedy tokens, computed in a subprocess whose
    BLAS has one thread: on 2 busy cores, multi-threaded OpenBLAS made each
    float64 step ~10x slower.

    Returns:
        (list of (vocab,) float64 arrays, list of token lists)
    """
    import json
    import os
    import subprocess
    import sys
    import tempfile

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "out.npz")
        request = json.dumps([gguf_path, logit_prompts, greedy_prompts,
                              new_tokens, out])
        subprocess.run(
            [sys.executable, "-m", "tests.generation.numpy_llama", request],
            check=True, cwd=root, env=env, timeout=1200,
        )
        with np.load(out) as data:
            logits = [data[f"logits_{i}"] for i in range(len(logit_prompts))]
            tokens = [data[f"tokens_{i}"].tolist() for i in range(len(greedy_prompts))]
    return logits, tokens


def _main(request):
    import json

    gguf_path, logit_prompts, greedy_prompts, new_tokens, out = json.loads(request)
    model = NumpyLlama(gguf_path)
    arrays = {}
    for i, prompt in enumerate(logit_prompts):
        arrays[f"logits_{i}"] = model.forward(prompt)[0][-1]
    for i, prompt in enumerate(greedy_prompts):
        arrays[f"tokens_{i}"] = np.array(model.greedy(prompt, new_tokens))
    np.savez(out, **arrays)


if __name__ == "__main__":
    import sys

    _main(sys.argv[1])
