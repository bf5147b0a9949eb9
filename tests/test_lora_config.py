import json

import pytest

import keras_lowrank as klr


def test_defaults():
    config = klr.LoRAConfig()
    assert (config.rank, config.alpha, config.dropout) == (8, None, 0.0)
    assert config.targets == ("query", "value")
    assert config.trainable is None and config.init == "default"


def test_json_round_trip():
    config = klr.LoRAConfig(
        rank=4, alpha=16, dropout=0.1, use_rslora=True, targets="all-linear",
        exclude=["pooled_dense"], trainable=["logits"],
        rank_pattern={"*/value": 2}, alpha_pattern={"re:.*query": 3.0}, init="pissa",
    )
    text = json.dumps(config.to_dict())
    assert klr.LoRAConfig.from_dict(json.loads(text)) == config
    assert klr.LoRAConfig.from_json(config.to_json()) == config


def test_per_layer_overrides_first_match_wins():
    config = klr.LoRAConfig(rank=8, alpha=16, rank_pattern={"*/value": 2, "value": 4},
                            alpha_pattern={"query": 1.0})
    assert config.rank_for("t/self_attention_layer/value") == 2
    assert config.rank_for("t/self_attention_layer/query") == 8
    assert config.alpha_for("t/self_attention_layer/query") == 1.0
    assert config.alpha_for("t/self_attention_layer/value") == 16


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rank": 0}, r"`rank` to be a positive integer. Received: rank=0"),
        ({"rank": 1.5}, r"Received: rank=1.5"),
        ({"alpha": -1}, r"`alpha` > 0. Received: alpha=-1"),
        ({"dropout": 1}, r"`dropout` in \[0, 1\). Received: dropout=1"),
        ({"targets": ()}, r"at least one pattern in `targets`"),
        ({"targets": ["re:("]}, r"invalid regular expression"),
        ({"rank_pattern": {"query": 0}}, r"rank_pattern\['query'\]` to be a positive integer"),
        ({"alpha_pattern": {"query": 0}}, r"alpha_pattern\['query'\]` > 0"),
        ({"init": "olora"}, r"unknown `init`. Received: init='olora'. Supported: \['default', 'pissa'\]"),
        ({"targets": 3}, r"`targets` to be a pattern or a list of patterns. Received: targets=3"),
    ],
)
def test_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        klr.LoRAConfig(**kwargs)


def test_unknown_field():
    with pytest.raises(ValueError, match=r"no field 'rnak'. Received: \['rnak'\]. Fields: \['rank'"):
        klr.LoRAConfig().replace(rnak=4)
    with pytest.raises(ValueError, match=r"no field 'lora_alpha'"):
        klr.LoRAConfig.from_dict({"lora_alpha": 4})
