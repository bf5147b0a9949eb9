"""A loaded PEFT adapter, exported to LiteRT, matches PEFT's merged model.

PEFT merges with `merge_and_unload()`; keras_lowrank merges inside
`klr.export`. Both artifacts must compute the same function: the `.tflite`
file, run in LiteRT, is compared with the merged PyTorch model.
"""

import pytest

import keras_lowrank as klr
from tests.peft import helpers as h


@pytest.mark.parametrize("family, variant", [("bert", "dora"), ("gpt2", "lora")])
def test_tflite_matches_peft_merged_model(family, variant, checkpoints, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    hf = h.hf_model(family, checkpoints[family])
    peft_model = h.peft_adapter(
        family, hf, tmp_path / "adapter", seed=9, r=4, lora_alpha=8,
        target_modules=h.ALL_LINEAR[family], use_dora=variant == "dora")
    adapted = klr.load_peft_adapters(h.keras_backbone(checkpoints[family]), tmp_path / "adapter")
    merged = peft_model.merge_and_unload()
    ids = h.token_ids(batch=3, seed=10)
    inputs = h.keras_inputs(family, ids)

    report = klr.export(adapted, tmp_path / "model.tflite", "tflite", sample_inputs=inputs)

    runner = Interpreter(model_path=str(tmp_path / "model.tflite")).get_signature_runner()
    outputs = runner(**inputs)
    sequence = outputs["sequence_output"] if family == "bert" else next(iter(outputs.values()))
    assert report.max_abs_diff <= 1e-4
    assert h.max_diff(sequence, h.hf_outputs(merged, ids)) < 1e-4
    assert h.max_diff(h.hf_outputs(merged, ids), h.hf_outputs(peft_model, ids)) < 1e-5
