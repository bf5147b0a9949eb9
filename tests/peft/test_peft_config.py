"""`PeftAdapterConfig` answers as PEFT does: targets, rank and alpha per module."""

import json

import pytest

import keras_lowrank as klr
from keras_lowrank.peft.peft_config import PeftAdapterConfig
from keras_lowrank.peft.peft_config import config_from_dict
from tests.peft import helpers as h

NAMES = [
    f"{prefix}encoder.layer.{i}.{module}"
    for prefix in ("", "bert.")
    for i in (0, 1, 11)
    for module in ("attention.self.query", "attention.self.value",
                   "attention.output.dense", "intermediate.dense", "output.dense")
] + ["bert.pooler.dense", "classifier", "model.layers.3.self_attn.q_proj",
     "model.layers.3.mlp.experts.0.up_proj", "transformer.h.10.attn.c_attn"]

CONFIGS = [
    dict(target_modules=["query", "value"]),
    dict(target_modules=["dense"], exclude_modules=["output.dense"]),
    dict(target_modules=r".*layer\.1\d?\..*(query|dense)"),
    dict(target_modules=["query", "dense", "q_proj"], layers_to_transform=[1, 3]),
    dict(target_modules=["query", "up_proj"], layers_to_transform=3, layers_pattern="layers"),
    dict(target_modules=["dense", "classifier"], modules_to_save=["classifier"]),
    dict(target_modules=["dense"], exclude_modules=r".*pooler.*"),
]


@pytest.mark.parametrize("fields", CONFIGS)
def test_targets_as_peft_matches(fields):
    from peft.tuners.tuners_utils import check_target_module_exists

    theirs = h.peft.LoraConfig(r=4, **fields)
    ours = config_from_dict({"peft_type": "LORA", "r": 4, **fields})
    for name in NAMES:
        expected = check_target_module_exists(theirs, name)
        expected = bool(expected) and type(expected).__name__ != "_ExcludedModule"
        assert ours.targets(name) == expected, name


def test_rank_and_alpha_patterns_as_peft_reads_them():
    from peft.utils.other import get_pattern_key

    rank_pattern = {"value": 2, r"layer\.1\..*query": 6, "pooler.dense": 3}
    alpha_pattern = {r"output\.dense": 5.0, "query": 7}
    ours = config_from_dict({"peft_type": "LORA", "r": 4, "lora_alpha": 8,
                             "rank_pattern": rank_pattern, "alpha_pattern": alpha_pattern})
    for name in NAMES:
        rank = rank_pattern.get(get_pattern_key(rank_pattern.keys(), name), 4)
        alpha = alpha_pattern.get(get_pattern_key(alpha_pattern.keys(), name), 8)
        spec = ours.spec_for(name)
        assert (spec.rank, spec.alpha, spec.scale) == (rank, alpha, alpha / rank), name


def test_rslora_and_dora_reach_the_spec():
    config = config_from_dict({"peft_type": "LORA", "r": 16, "lora_alpha": 8,
                               "use_rslora": True, "use_dora": True, "lora_dropout": 0.1})
    spec = config.spec_for("x.query")
    assert spec == klr.AdapterSpec(rank=16, alpha=8, dropout=0.1, use_rslora=True, variant="dora")
    assert spec.scale == 2.0


def test_written_config_is_one_peft_reads(tmp_path):
    config = PeftAdapterConfig(
        r=4, lora_alpha=8, target_modules=("c_attn", "h.0.mlp.c_fc"),
        rank_pattern={r"h\.1\.attn\.c_attn": 12}, alpha_pattern={r"h\.1\.attn\.c_attn": 24},
        modules_to_save=("classifier",), use_dora=True, fan_in_fan_out=True,
        task_type="SEQ_CLS")
    (tmp_path / "adapter_config.json").write_text(json.dumps(config.to_json_dict()))

    theirs = h.peft.PeftConfig.from_pretrained(str(tmp_path))

    assert isinstance(theirs, h.peft.LoraConfig)
    assert (theirs.r, theirs.lora_alpha, theirs.use_dora, theirs.fan_in_fan_out) == (4, 8, True, True)
    assert set(theirs.target_modules) == {"c_attn", "h.0.mlp.c_fc"}
    assert klr.read_peft_config(tmp_path) == config


@pytest.mark.parametrize("fields, match", [
    ({"r": 0}, r"rank.*positive integer. Received: rank=0"),
    ({"lora_alpha": -1}, r"alpha.*> 0"),
    ({"lora_dropout": 1.5}, r"dropout.*\[0, 1\)"),
    ({"rank_pattern": {"query": 0}}, r"pattern 'query'.*rank=0"),
    ({"target_modules": "(query"}, r"invalid regular expression '\(query'"),
    ({"target_modules": 3}, r"list of module names or a regular expression"),
    ({"use_dora": "yes"}, r"`use_dora` must be true or false"),
    ({"some_future_variant": {"k": 1}}, r"some_future_variant=.*does not know"),
])
def test_invalid_fields(fields, match):
    with pytest.raises(ValueError, match=match):
        config_from_dict({"peft_type": "LORA", **fields})


def test_not_a_folder_or_not_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no adapter_config.json"):
        klr.read_peft_config(tmp_path)
    (tmp_path / "adapter_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        klr.read_peft_config(tmp_path)
    (tmp_path / "adapter_config.json").write_text("[1]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        klr.read_peft_config(tmp_path)
