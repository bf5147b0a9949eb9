"""`gguf_to_hf_folder` on a tiny Llama GGUF written as llama.cpp writes one:
keras-hub on the folder against the numpy pass on the GGUF's own tensors."""

import os

import numpy as np
import pytest

from keras_lowrank.models.gguf_folder import gguf_to_hf_folder
from keras_lowrank.models.gguf_folder import is_complete
from keras_lowrank.models.gguf_folder import main
from tests.generation.numpy_llama import NumpyLlama
from tests.generation.tiny_lms import GGUF_CONFIG
from tests.generation.tiny_lms import read_json
from tests.generation.tiny_lms import write_tiny_gguf


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf")
    gguf_path = folder / "tiny.gguf"
    hf, tokens = write_tiny_gguf(gguf_path)
    out = gguf_to_hf_folder(gguf_path, folder / "hf")
    return {"gguf": str(gguf_path), "folder": out, "hf": hf, "tokens": tokens}


def test_folder_files_and_config(tiny):
    assert is_complete(tiny["folder"])
    config = read_json(os.path.join(tiny["folder"], "config.json"))
    c = GGUF_CONFIG
    assert config["model_type"] == "llama"
    assert (config["num_hidden_layers"], config["hidden_size"]) == (c["layers"], c["hidden"])
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (
        c["heads"], c["kv_heads"])
    assert config["rms_norm_eps"] == 1e-5 and config["rope_theta"] == 10000.0
    assert config["tie_word_embeddings"] is True
    assert config["vocab_size"] == len(tiny["tokens"]) == 263
    tokenizer_config = read_json(os.path.join(tiny["folder"], "tokenizer_config.json"))
    assert tokenizer_config["eos_token"] == "<|im_end|>"
    assert tokenizer_config["chat_template"] == "{{ messages }}"


def test_q_and_k_rows_are_unpermuted_exactly(tiny):
    """Quantization is per row block, so un-permuting the dequantized rows
    gives exactly the dequantized Hugging Face rows."""
    import gguf
    from safetensors.numpy import load_file

    weights = load_file(os.path.join(tiny["folder"], "model.safetensors"))
    q4 = gguf.GGMLQuantizationType.Q4_1
    for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
        hf_name = f"model.layers.1.{name}.weight"
        expected = gguf.quants.dequantize(
            gguf.quants.quantize(tiny["hf"][hf_name], q4), q4)
        np.testing.assert_array_equal(weights[hf_name], expected)
    # Quantization error of Q4_1: at most half a step of each 32-block.
    diff = np.abs(weights["model.layers.0.mlp.up_proj.weight"]
                  - tiny["hf"]["model.layers.0.mlp.up_proj.weight"])
    assert 0 < diff.max() < 0.1


def test_keras_hub_matches_the_numpy_pass(tiny):
    """Logits of keras-hub on the folder vs an independent float64 pass on
    the GGUF tensors (permuted rows, adjacent-pair RoPE)."""
    import keras_hub

    backbone = keras_hub.models.Llama3Backbone.from_preset(
        tiny["folder"], layer_norm_epsilon=GGUF_CONFIG["eps"])
    prompt = [5, 40, 77, 3, 200, 9, 150, 61]
    expected, _ = NumpyLlama(tiny["gguf"]).forward(prompt)
    hidden = backbone({"token_ids": np.array([prompt]),
                       "padding_mask": np.ones((1, len(prompt)), bool)})
    logits = np.asarray(backbone.token_embedding(hidden, reverse=True))[0]
    assert np.max(np.abs(logits - expected)) < 1e-4


def test_tokenizer_json_is_byte_level_bpe(tiny):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(os.path.join(tiny["folder"], "tokenizer.json"))
    tokens = tiny["tokens"]
    ids = tokenizer.encode("hello 42").ids
    assert [tokens[i] for i in ids] == ["hell", "o", "Ġ", "4", "2"]
    assert tokenizer.decode(ids) == "hello 42"
    assert tokenizer.encode("<|im_start|>hi").ids[0] == 1


def test_rejects_other_architectures(tmp_path):
    import gguf

    writer = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "gpt2")
    writer.add_tensor("x", np.zeros(4, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match=r"architecture 'llama'.*'gpt2'"):
        gguf_to_hf_folder(tmp_path / "m.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_command_line_skips_a_complete_folder(tiny, capsys):
    before = os.path.getmtime(os.path.join(tiny["folder"], "model.safetensors"))
    assert main(["--gguf", tiny["gguf"], "--out", tiny["folder"]]) == 0
    assert capsys.readouterr().out.strip() == tiny["folder"]
    assert os.path.getmtime(os.path.join(tiny["folder"], "model.safetensors")) == before


def test_command_line_missing_gguf(tmp_path, capsys):
    assert main(["--gguf", str(tmp_path / "none.gguf"), "--out",
                 str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.startswith("gguf_folder: error: ")
