"""What cannot map is refused with a message that says why, and nothing changes.

Load refusals leave the input model as it was (weights, no adapters); save
refusals write nothing.
"""

import json
import os
import re

import keras_hub
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.adapters.adapted_model import apply_adapters
from tests.peft import helpers as h


@pytest.fixture
def bert(checkpoints):
    hf = h.hf_model("bert", checkpoints["bert"])
    backbone = h.keras_backbone(checkpoints["bert"])
    return hf, backbone, h.weights_of(backbone)


def _refused(backbone, before, folder, match):
    with pytest.raises(ValueError, match=match):
        klr.load_peft_adapters(backbone, folder)
    assert h.unchanged(backbone, before)
    assert klr.adapter_paths(backbone) == []


@pytest.mark.parametrize("method", ["LoHa", "IA3"])
def test_other_peft_methods(method, bert, tmp_path):
    hf, backbone, before = bert
    if method == "LoHa":
        config = h.peft.LoHaConfig(r=4, target_modules=["query"])
    else:
        config = h.peft.IA3Config(target_modules=["query", "intermediate.dense"],
                                  feedforward_modules=["intermediate.dense"])
    h.peft.get_peft_model(hf, config).save_pretrained(tmp_path)
    _refused(backbone, before, tmp_path,
             rf"peft_type='{method.upper()}'.*LoRA adapters only.*\(LoHa, LoKr, IA3, prompt")


def test_prompt_tuning_config(bert, tmp_path):
    _, backbone, before = bert
    (tmp_path / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 8}))
    _refused(backbone, before, tmp_path, "peft_type='PROMPT_TUNING'")


def test_target_module_without_keras_hub_counterpart(bert, tmp_path):
    hf, backbone, before = bert
    h.peft_adapter("bert", hf, tmp_path, r=4, target_modules=["query", "word_embeddings"])
    _refused(backbone, before, tmp_path, re.escape(
        "PEFT module 'embeddings.word_embeddings', which has no keras-hub "
        "counterpart in BertBackbone") + r".*Mappable: bert modules BertBackbone has a "
        r"layer for: \['encoder\.layer\.<i>\.attention\.self\.query'.*'pooler\.dense'\] "
        r"\(<i> from 0 to 1\)")


def test_llama_lm_head_has_no_counterpart(checkpoints, tmp_path):
    hf = h.hf_model("llama", checkpoints["llama"], task=True)
    h.peft_adapter("llama", hf, tmp_path, r=4, target_modules=["q_proj", "lm_head"])
    model = keras_hub.models.Llama3CausalLM.from_preset(checkpoints["llama"], preprocessor=None)
    before = h.weights_of(model)
    _refused(model, before, tmp_path, r"PEFT module 'lm_head'.*Mappable: llama modules")


def test_modules_to_save_without_counterpart(checkpoints, tmp_path):
    hf = h.hf_model("llama", checkpoints["llama"], task=True)
    h.peft_adapter("llama", hf, tmp_path, r=4, target_modules=["q_proj"],
                   modules_to_save=["lm_head"])
    model = keras_hub.models.Llama3CausalLM.from_preset(checkpoints["llama"], preprocessor=None)
    before = h.weights_of(model)
    _refused(model, before, tmp_path, r"full weights \(modules_to_save\) for PEFT module 'lm_head'")


def test_base_model_with_other_shapes(bert, tmp_path):
    hf, _, _ = bert
    h.peft_adapter("bert", hf, tmp_path, r=4, target_modules=["query", "value"])
    other = keras_hub.models.BertBackbone(
        vocabulary_size=h.VOCAB, num_layers=2, num_heads=4, hidden_dim=48,
        intermediate_dim=64, max_sequence_length=32)
    before = h.weights_of(other)
    _refused(other, before, tmp_path, re.escape(
        "Shape mismatch at PEFT module 'encoder.layer.0.attention.self.query' "
        "(keras-hub layer transformer_layer_0/self_attention_layer/query): the "
        "adapter's lora_A has shape (4, 32), the model's layer needs (4, 48)"))


def test_adapter_from_a_deeper_model(bert, checkpoints, tmp_path):
    deeper = h.save_hf_checkpoint("bert", str(tmp_path / "deeper"), num_hidden_layers=3)
    h.peft_adapter("bert", h.hf_model("bert", deeper), tmp_path / "ad", r=2,
                   target_modules=["value"])
    _, backbone, before = bert
    _refused(backbone, before, tmp_path / "ad",
             r"'encoder\.layer\.2\.attention\.self\.value'.*\(<i> from 0 to 1\)")


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_base_rewriting_init_not_converted(init, bert, tmp_path):
    hf, backbone, before = bert
    h.peft.get_peft_model(hf, h.peft.LoraConfig(
        r=4, target_modules=["query"], init_lora_weights=init)).save_pretrained(tmp_path)
    _refused(backbone, before, tmp_path,
             rf"init_lora_weights='{init}'.*rewrote the base model's weights.*"
             r"path_initial_model_for_weight_conversion")


def test_pissa_converted_by_peft_loads_exactly(bert, checkpoints, tmp_path):
    """The conversion the refusal names gives a plain rank-2r adapter that maps."""
    hf, backbone, _ = bert
    peft_model = h.peft.get_peft_model(hf, h.peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["query", "value"], init_lora_weights="pissa"))
    peft_model.save_pretrained(tmp_path / "initial")
    h.randomize_lora(peft_model, seed=4, std=0.3)  # "training"
    peft_model.save_pretrained(
        tmp_path / "converted",
        path_initial_model_for_weight_conversion=str(tmp_path / "initial"))
    ids = h.token_ids()
    fresh = h.peft.PeftModel.from_pretrained(
        h.hf_model("bert", checkpoints["bert"]), tmp_path / "converted").eval()

    adapted = klr.load_peft_adapters(backbone, tmp_path / "converted")

    assert klr.read_peft_config(tmp_path / "converted").r == 8
    assert h.max_diff(h.keras_outputs("bert", adapted, ids), h.hf_outputs(fresh, ids)) < 1e-4


def test_trained_biases(bert, tmp_path):
    hf, backbone, before = bert
    h.peft_adapter("bert", hf, tmp_path, r=4, target_modules=["query"], bias="lora_only")
    _refused(backbone, before, tmp_path, r"bias='lora_only'.*Only bias='none' maps")


def test_unsupported_peft_feature(bert, tmp_path):
    hf, backbone, before = bert
    h.peft_adapter("bert", hf, tmp_path, r=4, target_modules=["query"])
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    config["layer_replication"] = [[0, 2], [1, 2]]
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    _refused(backbone, before, tmp_path, r"layer_replication=\[\[0, 2\], \[1, 2\]\].*do not have")


def test_factors_the_config_does_not_target(bert, tmp_path):
    hf, backbone, before = bert
    h.peft_adapter("bert", hf, tmp_path, r=4, target_modules=["query", "value"])
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    config["target_modules"] = ["query"]
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    _refused(backbone, before, tmp_path, r"module 'encoder\.layer\.0\.attention\.self\.value', "
             r"which its adapter_config\.json does not target")


def test_model_of_another_family(tmp_path, bert):
    hf, _, _ = bert
    h.peft_adapter("bert", hf, tmp_path, r=4, target_modules=["query"])
    other = keras_hub.models.DistilBertBackbone(
        vocabulary_size=h.VOCAB, num_layers=1, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=8)
    before = h.weights_of(other)
    _refused(other, before, tmp_path,
             r"families \['bert', 'llama', 'gpt2'\].*DistilBertBackbone")


def test_missing_folder_and_pickled_weights(bert, tmp_path):
    _, backbone, before = bert
    with pytest.raises(FileNotFoundError, match="No PEFT adapter folder"):
        klr.load_peft_adapters(backbone, tmp_path / "nothing")
    hf = bert[0]
    h.peft.get_peft_model(hf, h.peft.LoraConfig(r=2, target_modules=["query"])).save_pretrained(
        tmp_path / "bin", safe_serialization=False)
    with pytest.raises(FileNotFoundError, match=r"adapter_model\.bin.*safe_serialization=True"):
        klr.load_peft_adapters(backbone, tmp_path / "bin")
    assert h.unchanged(backbone, before)


# === Saving ===


def _save_refused(model, folder, match):
    with pytest.raises(ValueError, match=match):
        klr.save_peft_adapters(model, folder)
    assert not os.path.exists(folder)
    assert not [n for n in os.listdir(os.path.dirname(folder)) if n.startswith(".")]


def test_save_adapter_without_hf_counterpart(bert, tmp_path):
    _, backbone, _ = bert
    model = klr.add_adapters(backbone, rank=2, targets=["query", "token_embedding"])
    _save_refused(model, tmp_path / "out", r"Layer 'token_embedding' holds an adapter, but no "
                  r"HF module of the bert family maps to it")


def test_save_mixed_variants(bert, tmp_path):
    _, backbone, _ = bert
    model = apply_adapters(backbone, {
        "transformer_layer_0/self_attention_layer/query": klr.AdapterSpec(rank=2),
        "transformer_layer_0/self_attention_layer/value": klr.AdapterSpec(rank=2, variant="dora"),
    }, keep_trainable=())
    _save_refused(model, tmp_path / "out", r"all LoRA, all DoRA or all AdaLoRA")


def test_save_pissa_adapter(bert, tmp_path):
    _, backbone, _ = bert
    model = klr.add_adapters(backbone, rank=2, init="pissa")
    _save_refused(model, tmp_path / "out", r"initialized with PiSSA.*residual")


def test_save_trainable_layer_without_counterpart(bert, tmp_path):
    _, backbone, _ = bert
    model = klr.add_adapters(backbone, rank=2, trainable=["embeddings_layer_norm"])
    _save_refused(model, tmp_path / "out",
                  r"Layer 'embeddings_layer_norm' is trainable.*modules_to_save")


def test_save_never_replaces_other_files(bert, tmp_path, occupied_folder):
    _, backbone, _ = bert
    model = klr.add_adapters(backbone, rank=2)
    with pytest.raises(ValueError, match="holding other files"):
        klr.save_peft_adapters(model, occupied_folder)
    assert sorted(os.listdir(occupied_folder)) == ["notes.txt"]
    klr.save_peft_adapters(model, tmp_path / "out")
    klr.save_peft_adapters(model, tmp_path / "out")  # an earlier PEFT folder is replaced
    assert sorted(os.listdir(tmp_path / "out")) == ["adapter_config.json", "adapter_model.safetensors"]


def test_save_without_adapters(bert, tmp_path):
    _, backbone, _ = bert
    _save_refused(backbone, tmp_path / "out", "holds no LoRA adapter")
    np.testing.assert_equal(klr.adapter_paths(backbone), [])
