"""The command line on PEFT folders: inspect one, export a base folder plus
a PEFT adapter to a verified `.tflite` that matches PEFT's merged model."""

import numpy as np

from keras_lowrank.cli.main import main
from tests.peft import helpers as h


def test_export_base_folder_with_peft_adapters_matches_peft(checkpoints, tmp_path, capsys):
    from ai_edge_litert.interpreter import Interpreter

    hf = h.hf_model("bert", checkpoints["bert"])
    peft_model = h.peft_adapter("bert", hf, tmp_path / "adapter", seed=3, r=4, lora_alpha=8,
                                target_modules=["query", "value"])
    out = tmp_path / "model.tflite"
    assert main(["export", checkpoints["bert"], "--peft-adapters", str(tmp_path / "adapter"),
                 "--format", "tflite", "--out", str(out)]) == 0
    ids = h.token_ids(batch=2, seed=4)
    runner = Interpreter(model_path=str(out)).get_signature_runner()
    outputs = runner(**h.keras_inputs("bert", ids))
    merged = peft_model.merge_and_unload()
    assert h.max_diff(outputs["sequence_output"], h.hf_outputs(merged, ids)) < 1e-4
    unadapted = h.hf_outputs(h.hf_model("bert", checkpoints["bert"]), ids)
    assert h.max_diff(outputs["sequence_output"], unadapted) > 1e-2  # the adapter is in


def test_inspect_a_peft_folder(checkpoints, tmp_path, capsys):
    hf = h.hf_model("bert", checkpoints["bert"])
    h.peft_adapter("bert", hf, tmp_path / "adapter", seed=3, r=4, lora_alpha=8,
                   target_modules=["query", "value"])
    assert main(["inspect", str(tmp_path / "adapter")]) == 0
    out = capsys.readouterr().out
    assert "query" in out and "value" in out
    rows = [line for line in out.splitlines() if "encoder.layer." in line]
    assert len(rows) == 2 * 2  # 2 layers x (query, value)
    assert np.all(["4" in row for row in rows])


def test_peft_folder_flag_refuses_a_plain_folder(checkpoints, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["export", checkpoints["bert"], "--peft-adapters", str(tmp_path / "empty"),
                 "--format", "tflite", "--out", str(tmp_path / "m.tflite")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "adapter_config.json" in err
    assert not (tmp_path / "m.tflite").exists()
