"""What the command line needs: recognize, describe, and load a PEFT folder with its base."""

import numpy as np

import keras_lowrank as klr
from keras_lowrank.peft import describe_peft_folder
from keras_lowrank.peft import is_peft_folder
from keras_lowrank.peft import load_peft_model
from tests.peft import helpers as h


def test_describe_and_recognize(checkpoints, tmp_path):
    hf = h.hf_model("bert", checkpoints["bert"])
    h.peft_adapter("bert", hf, tmp_path, r=4, lora_alpha=8,
                   target_modules=["query", "value"], rank_pattern={"value": 2})

    info = describe_peft_folder(tmp_path)

    assert is_peft_folder(tmp_path) and not is_peft_folder(checkpoints["bert"])
    assert info["summary"].startswith(
        f"PEFT LoRA adapter (no task type, base {checkpoints['bert']}): 4 adapted "
        "modules, r=4, lora_alpha=8, "
        f"{2 * (4 * 64) + 2 * (2 * 64):,} parameters,")
    assert info["rows"][0] == ("module", "rank", "alpha", "scale", "lora_A", "lora_B", "params")
    assert ("encoder.layer.1.attention.self.value", "2", "8", "4", "2x32", "32x2", "128") in info["rows"]


def test_load_peft_model_picks_the_class_and_passes_settings(checkpoints, tmp_path):
    folder = h.save_hf_checkpoint("llama", str(tmp_path / "llama"), rms_norm_eps=1e-5)
    hf = h.hf_model("llama", folder, task=True)
    peft_model = h.peft_adapter("llama", hf, tmp_path / "ad", task_type="CAUSAL_LM", r=2,
                                target_modules=["v_proj"])
    ids = h.token_ids()

    model = load_peft_model(folder, tmp_path / "ad", preprocessor=False)

    assert type(model).__name__ == "Llama3CausalLM"
    assert model.backbone.layer_norm_epsilon == 1e-5  # not ported by keras-hub itself
    assert h.max_diff(h.keras_outputs("llama", model, ids), h.hf_outputs(peft_model, ids)) < 1e-4
    assert len(klr.adapter_paths(model)) == 2
    assert np.isfinite(h.keras_outputs("llama", model, ids)).all()
