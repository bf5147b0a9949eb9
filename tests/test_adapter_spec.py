"""`AdapterSpec`: declared once, carried whole by config, layers and files."""

import math

import keras
import pytest

import keras_lowrank as klr
from keras_lowrank.layers.adapter_spec import FIELDS
from keras_lowrank.surgery.layer_paths import layer_paths
from tests import tiny_models as tiny


def test_defaults_and_scale():
    spec = klr.AdapterSpec()
    assert spec.to_dict() == {"rank": 8, "alpha": 8.0, "dropout": 0.0, "use_rslora": False,
                              "variant": "lora", "pissa_rank": None}
    assert spec.scale == 1.0
    assert klr.AdapterSpec(rank=4, alpha=16).scale == 4.0
    assert klr.AdapterSpec(rank=4, alpha=16, use_rslora=True).scale == 8.0
    assert klr.AdapterSpec(rank=4, alpha=16).replace(rank=16).scale == 1.0


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"rank": 0}, r"AdapterSpec expected `rank` to be a positive integer. Received: rank=0"),
        ({"rank": "8"}, r"Received: rank='8'"),
        ({"alpha": math.inf}, r"expected a finite `alpha`"),
        ({"dropout": 1}, r"`dropout` in \[0, 1\). Received: dropout=1"),
        ({"use_rslora": "yes"}, r"`use_rslora` to be True or False. Received: use_rslora='yes'"),
        ({"variant": "lokr"}, r"Unknown adapter variant. Received: variant='lokr'. Registered: "),
        ({"pissa_rank": -1}, r"`pissa_rank` to be a positive integer"),
    ],
)
def test_validation(fields, message):
    with pytest.raises(ValueError, match=message):
        klr.AdapterSpec(**fields)


def test_from_dict_names_its_source_and_ignores_record_only_keys():
    spec = klr.AdapterSpec.from_dict({"rank": 2, "kind": "LoRADense", "base_kernel_shape": [4, 4]})
    assert spec == klr.AdapterSpec(rank=2)
    with pytest.raises(ValueError, match=r"^file.safetensors, adapter 'q': AdapterSpec expected"):
        klr.AdapterSpec.from_dict({"rank": 0}, source="file.safetensors, adapter 'q'")
    with pytest.raises(ValueError, match=r"expected a dict of adapter settings. Received: list"):
        klr.AdapterSpec.from_dict([2])


def test_replace_refuses_unknown_fields():
    with pytest.raises(ValueError, match=r"AdapterSpec has no field 'rnak'"):
        klr.AdapterSpec().replace(rnak=2)


def test_config_builds_per_path_specs():
    config = klr.LoRAConfig(rank=8, alpha=16, dropout=0.1, use_rslora=True,
                            rank_pattern={"*/value": 2}, alpha_pattern={"*/value": 4})
    assert config.spec_for("layer/query") == klr.AdapterSpec(8, 16.0, 0.1, True)
    assert config.spec_for("layer/value") == klr.AdapterSpec(2, 4.0, 0.1, True)


def test_layers_hold_serialize_and_files_record_the_spec(tmp_path):
    config = klr.LoRAConfig(rank=3, alpha=6, rank_pattern={"*/value": 2})
    model = klr.add_adapters(tiny.bert_classifier(), config)
    query = layer_paths(model)["transformer_layer_0/self_attention_layer/query"]
    value = layer_paths(model)["transformer_layer_0/self_attention_layer/value"]
    assert query.spec == klr.AdapterSpec(rank=3, alpha=6)
    assert value.spec == klr.AdapterSpec(rank=2, alpha=6)
    layer_config = query.get_config()
    assert {k: layer_config[k] for k in FIELDS} == query.spec.to_dict()
    clone = type(query).from_config(layer_config)
    assert clone.spec == query.spec
    path = tmp_path / "a.safetensors"
    klr.save_adapters(model, path)
    recorded = klr.read_adapter_metadata(path)["adapters"]
    assert klr.AdapterSpec.from_dict(
        recorded["transformer_layer_0/self_attention_layer/value"]) == value.spec


def test_shrinking_copies_the_spec_with_a_new_rank():
    model = klr.add_adapters(tiny.bert_classifier(), rank=4, alpha=8, dropout=0.1)
    shrunk, _ = klr.shrink_adapters(model, max_rank=1)
    query = layer_paths(shrunk)["transformer_layer_0/self_attention_layer/query"]
    assert query.spec == klr.AdapterSpec(rank=1, alpha=2.0, dropout=0.1)
    assert query.scale == layer_paths(model)["transformer_layer_0/self_attention_layer/query"].scale


def test_spec_fields_are_read_only_on_layers():
    dense = keras.layers.Dense(4)
    dense.build((None, 4))
    adapter = klr.LoRADense(dense, rank=2)
    with pytest.raises(AttributeError):
        adapter.rank = 3
