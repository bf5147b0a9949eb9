"""PEFT adapters made by PEFT on tiny BERT, Llama and GPT-2, both ways.

Load: PEFT creates the adapter (random non-zero factors) on the HF model
and saves it; `load_peft_adapters` puts it on the keras-hub model converted
from the same checkpoint; outputs match PEFT's. Save: adapters trained or
set in keras_lowrank, written by `save_peft_adapters`, load in
`PeftModel.from_pretrained` with matching outputs.
"""

import numpy as np
import pytest

import keras_lowrank as klr
from tests.peft import helpers as h

FAMILIES = ("bert", "llama", "gpt2")
TOLERANCE = 1e-4


def _check_bases_match(family, hf, keras_model, ids):
    base = h.max_diff(h.keras_outputs(family, keras_model, ids), h.hf_outputs(hf, ids))
    assert base < 1e-5, f"{family}: the base models differ by {base}"


@pytest.mark.parametrize("variant", ["lora", "dora"])
@pytest.mark.parametrize("family", FAMILIES)
def test_peft_adapter_loads_with_matching_outputs(family, variant, checkpoints, tmp_path):
    hf = h.hf_model(family, checkpoints[family])
    backbone = h.keras_backbone(checkpoints[family])
    ids = h.token_ids()
    _check_bases_match(family, hf, backbone, ids)
    first, second = h.ALL_LINEAR[family][0], h.ALL_LINEAR[family][-1]
    peft_model = h.peft_adapter(
        family, hf, tmp_path / "adapter", r=4, lora_alpha=8,
        target_modules=h.ALL_LINEAR[family], use_dora=variant == "dora",
        rank_pattern={second: 2}, alpha_pattern={first: 3},
    )
    expected = h.hf_outputs(peft_model, ids)
    assert h.max_diff(expected, h.hf_outputs(hf, ids)) > 0.05  # the adapter matters

    adapted = klr.load_peft_adapters(backbone, tmp_path / "adapter")

    assert h.max_diff(h.keras_outputs(family, adapted, ids), expected) < TOLERANCE
    assert klr.adapter_paths(backbone) == []  # the input model is untouched
    layers = {p: a for p, a in _adapters(adapted).items()}
    ranks = {a.rank for a in layers.values()}
    assert ranks == {2, 4}
    assert {a.spec.variant for a in layers.values()} == {variant}


def _adapters(model):
    from keras_lowrank.adapters.adapted_model import adapters

    return adapters(model)


@pytest.mark.parametrize("family", FAMILIES)
def test_regex_targets_and_rslora(family, checkpoints, tmp_path):
    hf = h.hf_model(family, checkpoints[family])
    backbone = h.keras_backbone(checkpoints[family])
    ids = h.token_ids(seed=1)
    regex = {
        "bert": r".*layer\.1\.attention\.self\.(query|value)",
        "llama": r".*layers\.1\.self_attn\.(q_proj|v_proj)",
        "gpt2": r".*h\.1\.attn\.c_attn",
    }[family]
    peft_model = h.peft_adapter(
        family, hf, tmp_path / "adapter", seed=3, r=4, lora_alpha=6,
        use_rslora=True, target_modules=regex, lora_dropout=0.1,
    )
    adapted = klr.load_peft_adapters(backbone, tmp_path / "adapter")
    assert h.max_diff(h.keras_outputs(family, adapted, ids), h.hf_outputs(peft_model, ids)) < TOLERANCE
    found = _adapters(adapted)
    assert all(p.startswith("transformer_layer_1/") for p in found)
    assert len(found) == (3 if family == "gpt2" else 2)
    assert [a.scale for a in found.values()] == pytest.approx([6 / 2] * len(found))
    assert [a.dropout for a in found.values()] == pytest.approx([0.1] * len(found))


@pytest.mark.parametrize("variant", ["lora", "dora"])
@pytest.mark.parametrize("family", FAMILIES)
def test_saved_adapter_loads_in_peft(family, variant, checkpoints, tmp_path):
    hf = h.hf_model(family, checkpoints[family])
    backbone = h.keras_backbone(checkpoints[family])
    ids = h.token_ids(seed=2)
    model = klr.add_adapters(
        backbone, rank=4, alpha=8, targets="all-linear", use_dora=variant == "dora",
        rank_pattern={"*/feedforward_output_dense": 2},
    )
    _set_random_factors(model, seed=5)
    expected = h.keras_outputs(family, model, ids)
    assert h.max_diff(expected, h.keras_outputs(family, backbone, ids)) > 0.05

    config = klr.save_peft_adapters(model, tmp_path / "out")

    peft_model = h.peft.PeftModel.from_pretrained(hf, tmp_path / "out").eval()
    assert h.max_diff(h.hf_outputs(peft_model, ids), expected) < TOLERANCE
    assert config.use_dora == (variant == "dora")
    assert config.r == 4 and config.lora_alpha == 8
    # GPT-2's q, k, v adapters have their own A's: c_attn gets rank 3 * 4.
    assert set(config.rank_pattern.values()) == ({2, 12} if family == "gpt2" else {2})
    # And back: the folder PEFT loaded loads here to the same model.
    again = klr.load_peft_adapters(backbone, tmp_path / "out")
    assert h.max_diff(h.keras_outputs(family, again, ids), expected) < 1e-5


def _set_random_factors(model, seed, std=0.15):
    rng = np.random.default_rng(seed)
    for adapter in _adapters(model).values():
        for name, weight in adapter.adapter_weights(adapter.adapter_name).items():
            value = np.asarray(weight)
            if name == "lora_magnitude":
                weight.assign(value * rng.uniform(0.8, 1.2, value.shape).astype("float32"))
            else:
                weight.assign(rng.normal(0, std, value.shape).astype("float32"))


def test_gpt2_fused_attention_round_trip_keeps_rank(checkpoints, tmp_path):
    """PEFT's c_attn -> query/key/value sharing A -> c_attn of the same rank."""
    hf = h.hf_model("gpt2", checkpoints["gpt2"])
    h.peft_adapter("gpt2", hf, tmp_path / "in", r=4, lora_alpha=8, target_modules=["c_attn"])
    adapted = klr.load_peft_adapters(h.keras_backbone(checkpoints["gpt2"]), tmp_path / "in")
    layers = _adapters(adapted)
    query = layers["transformer_layer_0/self_attention/query"]
    key = layers["transformer_layer_0/self_attention/key"]
    np.testing.assert_array_equal(np.asarray(query.lora_a), np.asarray(key.lora_a))

    klr.save_peft_adapters(adapted, tmp_path / "out")

    from safetensors.numpy import load_file

    before = load_file(str(tmp_path / "in" / "adapter_model.safetensors"))
    after = load_file(str(tmp_path / "out" / "adapter_model.safetensors"))
    # A GPT2Model-relative adapter (no `transformer.` prefix) comes back as one.
    assert sorted(before) == sorted(after)
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])
    assert klr.read_peft_config(tmp_path / "out").r == 4


def test_gpt2_separately_trained_query_key_value_map_exactly(checkpoints, tmp_path):
    """Different A's, ranks and scales on q/k/v: c_attn of rank 2+3+4, exact."""
    hf = h.hf_model("gpt2", checkpoints["gpt2"])
    backbone = h.keras_backbone(checkpoints["gpt2"])
    model = klr.add_adapters(
        backbone, rank=4, alpha=4, targets=["query", "key", "value"],
        rank_pattern={"key": 3, "re:transformer_layer_1/.*/query": 2},
        alpha_pattern={"value": 12},
    )
    _set_random_factors(model, seed=7)
    ids = h.token_ids(seed=3)

    config = klr.save_peft_adapters(model, tmp_path / "out")

    peft_model = h.peft.PeftModel.from_pretrained(hf, tmp_path / "out").eval()
    assert h.max_diff(h.hf_outputs(peft_model, ids), h.keras_outputs("gpt2", model, ids)) < TOLERANCE
    assert config.target_modules == ("c_attn",)
    assert config.fan_in_fan_out is True
    assert sorted({config.r, *config.rank_pattern.values()}) == [9, 11]


def test_gpt2_query_only_adapter_writes_zero_key_value_rows(checkpoints, tmp_path):
    hf = h.hf_model("gpt2", checkpoints["gpt2"])
    model = klr.add_adapters(h.keras_backbone(checkpoints["gpt2"]), rank=2, targets=["query"],
                             use_dora=True)
    _set_random_factors(model, seed=8)
    ids = h.token_ids(seed=4)
    klr.save_peft_adapters(model, tmp_path / "out")
    peft_model = h.peft.PeftModel.from_pretrained(hf, tmp_path / "out").eval()
    assert h.max_diff(h.hf_outputs(peft_model, ids), h.keras_outputs("gpt2", model, ids)) < TOLERANCE
