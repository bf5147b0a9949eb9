"""AdaLoRA folders against the real PEFT, on a tiny BERT."""

import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.surgery.layer_paths import layer_paths
from tests.peft import helpers

torch, transformers, peft = helpers.import_torch_stack()
MASK = [True, False, True, True, False, True]  # 4 of init_r = 6 survive


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return helpers.save_hf_checkpoint("bert", str(tmp_path_factory.mktemp("hf") / "bert"))


def _peft_adalora(checkpoint, folder):
    """A trained-looking PEFT AdaLoRA model: random factors, some triplets pruned."""
    config = peft.AdaLoraConfig(init_r=6, target_r=3, lora_alpha=12, total_step=50,
                                target_modules=["query", "value"])
    model = peft.get_peft_model(helpers.hf_model("bert", checkpoint), config)
    generator = torch.Generator().manual_seed(0)
    pattern = {}
    with torch.no_grad():
        for name, parameter in model.base_model.model.named_parameters():
            if any(k in name for k in ("lora_A", "lora_B", "lora_E")):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
            if "lora_E" in name:  # masked as PEFT's RankAllocator does
                parameter.masked_fill_(~torch.tensor(MASK)[:, None], 0.0)
                pattern[name] = list(MASK)
    model.peft_config["default"].rank_pattern = pattern
    model.save_pretrained(folder)
    return model.eval()


def test_a_peft_adalora_folder_loads_with_equal_outputs(checkpoint, tmp_path):
    folder = str(tmp_path / "adalora")
    _peft_adalora(checkpoint, folder)
    reloaded = peft.PeftModel.from_pretrained(helpers.hf_model("bert", checkpoint), folder).eval()
    ids = helpers.token_ids()
    expected = helpers.hf_outputs(reloaded, ids)
    model = klr.load_peft_adapters(helpers.keras_backbone(checkpoint), folder)
    ranks = klr.adapter_ranks(model)
    assert len(ranks) == 4 and set(ranks.values()) == {4}
    adapter = layer_paths(model)[next(iter(ranks))]
    assert float(np.asarray(adapter.lora_ranknum)[0]) == 6.0 and adapter.alpha == 12.0
    diff = helpers.max_diff(helpers.keras_outputs("bert", model, ids), expected)
    assert diff < 1e-4, diff
    untouched = helpers.hf_outputs(helpers.hf_model("bert", checkpoint), ids)
    assert helpers.max_diff(untouched, expected) > 1e-2  # the adapter matters


def test_our_adalora_folder_loads_in_peft_with_equal_outputs(checkpoint, tmp_path):
    config = klr.LoRAConfig(rank=6, alpha=12, targets=("query", "value"),
                            adaptive=klr.AdaLoRA(target_rank=3, total_steps=50))
    model = klr.add_adapters(helpers.keras_backbone(checkpoint), config)
    rng = np.random.default_rng(1)
    for k, path in enumerate(klr.adapter_paths(model)):
        adapter = layer_paths(model)[path]
        mask = (np.arange(6) < 2 + k).astype("float32")  # ranks 2, 3, 4, 5
        for weight in (adapter.lora_a, adapter.lora_b, adapter.lora_e):
            weight.assign(rng.normal(size=weight.shape).astype("float32") * 0.3)
        adapter.lora_mask.assign(mask)
        adapter.lora_e.assign(np.asarray(adapter.lora_e) * mask)
    folder = str(tmp_path / "ours")
    klr.save_peft_adapters(model, folder)
    saved = klr.read_peft_config(folder)
    assert saved.peft_type == "ADALORA" and saved.adalora["target_r"] == 3
    loaded = peft.PeftModel.from_pretrained(helpers.hf_model("bert", checkpoint), folder).eval()
    ids = helpers.token_ids(seed=2)
    diff = helpers.max_diff(helpers.keras_outputs("bert", model, ids),
                            helpers.hf_outputs(loaded, ids))
    assert diff < 1e-4, diff
    again = klr.load_peft_adapters(helpers.keras_backbone(checkpoint), folder)
    assert klr.adapter_ranks(again) == klr.adapter_ranks(model)
    assert sorted(klr.adapter_ranks(again).values()) == [2, 3, 4, 5]
    assert helpers.max_diff(helpers.keras_outputs("bert", again, ids),
                            helpers.keras_outputs("bert", model, ids)) < 1e-5


@pytest.mark.parametrize("fields, message", [
    ({"use_dora": True}, r"ADALORA with use_dora=true"),
    ({"rank_pattern": {"encoder.layer.0.attention.self.query": 3}},
     r"rank_pattern is \{'<module>.lora_E'"),
    ({"init_r": 0}, r"positive integer `init_r`. Received: init_r=0"),
])
def test_bad_adalora_configs_are_refused(fields, message):
    from keras_lowrank.peft.peft_config import config_from_dict

    with pytest.raises(ValueError, match=message):
        config_from_dict({"peft_type": "ADALORA", "init_r": 6, "target_r": 3,
                          "total_step": 10, **fields})


def test_saving_adapters_of_several_initial_ranks_is_refused(checkpoint, tmp_path):
    config = klr.LoRAConfig(rank=6, rank_pattern={"*/query": 4}, targets=("query", "value"),
                            adaptive=klr.AdaLoRA(target_rank=3, total_steps=50))
    model = klr.add_adapters(helpers.keras_backbone(checkpoint), config)
    with pytest.raises(ValueError, match=r"one init_r and one lora_alpha.*ranks \[4.0, 6.0\]"):
        klr.save_peft_adapters(model, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
