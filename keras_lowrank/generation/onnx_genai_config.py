"""`genai_config`: the `genai_config.json` of an ONNX Runtime GenAI folder.

The layout is the one GenAI's own model builder writes
(`onnxruntime_genai/models/builders/base.py`, `make_genai_config`): a
`model` section (special tokens, context length, type, the decoder's file,
sizes and IO names) and a `search` section, here greedy by default. The
past and present buffers are not shared (`past_present_share_buffer:
false`): GenAI then feeds a past that grows with every call, which is what
the graph of `onnx_genai_model` takes.
"""

import json

from keras_lowrank.generation import onnx_genai_model as model_io

CONFIG_FILE = "genai_config.json"


def genai_config(*, genai_type, context_length, vocabulary_size, cache_shape,
                 num_attention_heads, hidden_size, bos_token_id,
                 eos_token_ids, pad_token_id):
    """The `genai_config.json` contents, as a dict.

    Args:
        genai_type: str. GenAI's model type (`"llama"`, `"qwen2"`, ...:
            `onnx_genai_family.FAMILIES`).
        context_length: int. Prompt plus generated tokens, at most.
        vocabulary_size: int.
        cache_shape: keras-hub's cache shape (1, layers, 2, positions, KVH, D).
        num_attention_heads: int. Query heads.
        hidden_size: int.
        bos_token_id: int.
        eos_token_ids: tuple of int. Generation stops at any of them.
        pad_token_id: int.
    """
    _, num_layers, _, _, kv_heads, head_dim = cache_shape
    return {
        "model": {
            "bos_token_id": int(bos_token_id),
            "context_length": int(context_length),
            "decoder": {
                "session_options": {
                    "log_id": "onnxruntime-genai",
                    "provider_options": [],
                },
                "filename": model_io.MODEL_FILE,
                "head_size": int(head_dim),
                "hidden_size": int(hidden_size),
                "inputs": {
                    "input_ids": "input_ids",
                    "attention_mask": "attention_mask",
                    "position_ids": "position_ids",
                    "past_key_names": model_io.PAST_KEY.replace("{}", "%d"),
                    "past_value_names": model_io.PAST_VALUE.replace("{}", "%d"),
                },
                "outputs": {
                    "logits": "logits",
                    "present_key_names": model_io.PRESENT_KEY.replace("{}", "%d"),
                    "present_value_names": model_io.PRESENT_VALUE.replace("{}", "%d"),
                },
                "num_attention_heads": int(num_attention_heads),
                "num_hidden_layers": int(num_layers),
                "num_key_value_heads": int(kv_heads),
            },
            "eos_token_id": [int(t) for t in eos_token_ids],
            "pad_token_id": int(pad_token_id),
            "type": genai_type,
            "vocab_size": int(vocabulary_size),
        },
        "search": {
            "diversity_penalty": 0.0,
            "do_sample": False,
            "early_stopping": True,
            "length_penalty": 1.0,
            "max_length": int(context_length),
            "min_length": 0,
            "no_repeat_ngram_size": 0,
            "num_beams": 1,
            "num_return_sequences": 1,
            "past_present_share_buffer": False,
            "repetition_penalty": 1.0,
            "temperature": 1.0,
            "top_k": 1,
            "top_p": 1.0,
        },
    }


def write_genai_config(config, path):
    with open(path, "w", encoding="utf-8") as file:
        json.dump(config, file, indent=4)
        file.write("\n")
