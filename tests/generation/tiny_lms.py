"""Tiny causal LMs, a matching tokenizer.json and a tiny Llama GGUF file,
all built from config for fast tests."""

import json

import keras_hub
import numpy as np

VOCAB = 64
MAX_LENGTH = 64
# Words of the tiny tokenizer: ids 0-2 special, then w3 ... w63.
SPECIAL = ["<pad>", "<bos>", "<eos>"]


def llama():
    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=VOCAB, num_layers=2, num_query_heads=4,
        num_key_value_heads=2, hidden_dim=16, intermediate_dim=32,
    )
    return keras_hub.models.Llama3CausalLM(backbone=backbone, preprocessor=None)


def gpt2():
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=MAX_LENGTH,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def gemma():
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=VOCAB, num_layers=2, num_query_heads=4,
        num_key_value_heads=2, hidden_dim=16, intermediate_dim=32, head_dim=4,
    )
    return keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None)


MODELS = {"llama": llama, "gpt2": gpt2, "gemma": gemma}


# === One-layer models of the other keras-hub families (2 query heads,
# 1 key-value head of 8 values) ===

def gemma3(sliding_window=None):
    """Gemma 3 (QK-norm; with `sliding_window`, its one layer attends
    locally, as five of every six Gemma 3 layers do)."""
    backbone = keras_hub.models.Gemma3Backbone(
        vocabulary_size=VOCAB, image_size=None, num_layers=1,
        num_query_heads=2, num_key_value_heads=1, hidden_dim=16,
        intermediate_dim=32, head_dim=8,
        use_sliding_window_attention=sliding_window is not None,
        sliding_window_size=sliding_window or 1024,
    )
    return keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=None)


def qwen(**options):
    """Qwen 2 / 2.5 (biased query, key and value projections); `options`
    as QwenBackbone takes them (`tie_word_embeddings`, ...)."""
    backbone = keras_hub.models.QwenBackbone(
        vocabulary_size=VOCAB, num_layers=1, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=16, intermediate_dim=32, **options,
    )
    return keras_hub.models.QwenCausalLM(backbone=backbone, preprocessor=None)


def qwen3(sliding_window=32768):
    """Qwen 3 (QK-norm; keras-hub masks every layer to `sliding_window`)."""
    backbone = keras_hub.models.Qwen3Backbone(
        vocabulary_size=VOCAB, num_layers=1, num_query_heads=2,
        num_key_value_heads=1, head_dim=8, hidden_dim=16, intermediate_dim=32,
        sliding_window_size=sliding_window,
    )
    return keras_hub.models.Qwen3CausalLM(backbone=backbone, preprocessor=None)


def mistral(sliding_window=512):
    backbone = keras_hub.models.MistralBackbone(
        vocabulary_size=VOCAB, num_layers=1, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=16, intermediate_dim=32,
        sliding_window=sliding_window,
    )
    return keras_hub.models.MistralCausalLM(backbone=backbone, preprocessor=None)


def phi3(**rope_scaling):
    """Phi-3 (fused feed-forward; `rope_scaling` as Phi3Backbone takes it,
    e.g. `rope_scaling_type="su"` and its factors)."""
    backbone = keras_hub.models.Phi3Backbone(
        vocabulary_size=VOCAB, num_layers=1, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=MAX_LENGTH, **rope_scaling,
    )
    return keras_hub.models.Phi3CausalLM(backbone=backbone, preprocessor=None)


FAMILY_MODELS = {"gemma3": gemma3, "qwen": qwen, "qwen3": qwen3,
                 "mistral": mistral, "phi3": phi3}


def quantizable_llama(seed=7):
    """A Llama 3 wide enough for int8: LiteRT's dynamic-range quantization
    leaves tensors under 1024 values in float (all of `llama()`'s)."""
    import keras

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=256, num_layers=2, num_query_heads=4,
        num_key_value_heads=2, hidden_dim=64, intermediate_dim=128,
    )
    return keras_hub.models.Llama3CausalLM(backbone=backbone, preprocessor=None)


def write_word_tokenizer(path, size=VOCAB):
    """A word-level tokenizer.json of `size` ids: `w3 w17 ...` <-> [3, 17]."""
    from tokenizers import Tokenizer
    from tokenizers import decoders
    from tokenizers import models
    from tokenizers import pre_tokenizers

    vocab = {token: i for i, token in enumerate(SPECIAL)}
    vocab.update({f"w{i}": i for i in range(len(SPECIAL), size)})
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins with spaces
    tokenizer.add_special_tokens(SPECIAL)
    tokenizer.save(str(path))
    return str(path)


def words(ids):
    return " ".join(f"w{i}" for i in ids)


# === A tiny Llama GGUF file, laid out as llama.cpp writes one ===

def _bytes_to_unicode():
    """GPT-2's byte -> printable character map of byte-level BPE."""
    keep = (list(range(ord("!"), ord("~") + 1))
            + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1)))
    chars, extra = [], 0
    mapping = {}
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def llamacpp_permute(weight, num_heads):
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows."""
    rows = weight.shape[0]
    return (weight.reshape(num_heads, 2, rows // num_heads // 2, -1)
            .swapaxes(1, 2).reshape(weight.shape))


GGUF_CONFIG = dict(layers=2, hidden=64, heads=4, kv_heads=2, ff=128,
                   theta=10000.0, eps=1e-5, context=128)


def write_tiny_gguf(path, seed=0):
    """A 2-layer Llama GGUF: Q4_1 matrices, Q8_0 embedding, F32 norms.

    Returns the Hugging Face-layout float32 weights before quantization
    (`{hf_name: array}`) and the GGUF's token list.
    """
    import gguf

    c = GGUF_CONFIG
    rng = np.random.default_rng(seed)
    byte_chars = list(_bytes_to_unicode().values())
    merges = ["h e", "l l", "he ll", "o Ġ"]
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + byte_chars + [
        m.replace(" ", "") for m in merges]
    vocab = len(tokens)  # 263
    head_dim = c["hidden"] // c["heads"]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(c["layers"])
    writer.add_context_length(c["context"])
    writer.add_embedding_length(c["hidden"])
    writer.add_feed_forward_length(c["ff"])
    writer.add_head_count(c["heads"])
    writer.add_head_count_kv(c["kv_heads"])
    writer.add_rope_freq_base(c["theta"])
    writer.add_layer_norm_rms_eps(c["eps"])
    writer.add_vocab_size(vocab)
    writer.add_rope_dimension_count(head_dim)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3, 3, 3] + [1] * (vocab - 3))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template("{{ messages }}")
    hf = {}

    def matrix(rows, cols):
        return (rng.standard_normal((rows, cols)) * 0.2).astype(np.float32)

    def add(gguf_name, hf_name, array, qtype, permute_heads=None):
        hf[hf_name] = array
        stored = array if permute_heads is None else llamacpp_permute(
            array, permute_heads)
        if qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(gguf_name, stored)
        else:
            writer.add_tensor(gguf_name, gguf.quants.quantize(stored, qtype),
                              raw_dtype=qtype)

    q4, q8, f32 = (gguf.GGMLQuantizationType.Q4_1,
                   gguf.GGMLQuantizationType.Q8_0,
                   gguf.GGMLQuantizationType.F32)
    add("token_embd.weight", "model.embed_tokens.weight",
        matrix(vocab, c["hidden"]), q8)
    for i in range(c["layers"]):
        p, h = f"blk.{i}.", f"model.layers.{i}."
        norm = lambda: (1 + 0.1 * rng.standard_normal(c["hidden"])).astype(np.float32)  # noqa: E731
        add(p + "attn_norm.weight", h + "input_layernorm.weight", norm(), f32)
        add(p + "attn_q.weight", h + "self_attn.q_proj.weight",
            matrix(c["hidden"], c["hidden"]), q4, c["heads"])
        add(p + "attn_k.weight", h + "self_attn.k_proj.weight",
            matrix(c["kv_heads"] * head_dim, c["hidden"]), q4, c["kv_heads"])
        add(p + "attn_v.weight", h + "self_attn.v_proj.weight",
            matrix(c["kv_heads"] * head_dim, c["hidden"]), q4)
        add(p + "attn_output.weight", h + "self_attn.o_proj.weight",
            matrix(c["hidden"], c["hidden"]), q4)
        add(p + "ffn_norm.weight", h + "post_attention_layernorm.weight",
            norm(), f32)
        add(p + "ffn_gate.weight", h + "mlp.gate_proj.weight",
            matrix(c["ff"], c["hidden"]), q4)
        add(p + "ffn_up.weight", h + "mlp.up_proj.weight",
            matrix(c["ff"], c["hidden"]), q4)
        add(p + "ffn_down.weight", h + "mlp.down_proj.weight",
            matrix(c["hidden"], c["ff"]), q4)
    add("output_norm.weight", "model.norm.weight",
        (1 + 0.1 * rng.standard_normal(c["hidden"])).astype(np.float32), f32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return hf, tokens


def read_json(path):
    with open(path, encoding="utf-8") as file:
        return json.load(file)
