"""`finetune_lm` end to end on a tiny Llama-family folder: the loss falls on
a toy task, the report's numbers, the exported generator measured in
LiteRT, and bad input refused with nothing written."""

import json
import os

import pytest

from keras_lowrank.data.data_error import DataError
from keras_lowrank.finetune.report import RUN_KEYS
from keras_lowrank.lm_finetune import LMFinetuneOptions
from keras_lowrank.lm_finetune import finetune_lm
from keras_lowrank.lm_finetune.lm_finetune_options import DEFAULT_TFLITE_KEEP_FLOAT
from keras_lowrank.lm_finetune.lm_run_export import export_lm_run
from tests.generation.tiny_lms import write_word_tokenizer
from tests.lm_finetune.conftest import toy_records
from tests.lm_finetune.conftest import write_jsonl

# Rank-8 LoRA on the 7 linear layers of each of the 2 blocks (hidden 64,
# 4 query and 2 key/value heads of 16, feed-forward 128): 8 x (in + out)
# each: q, o 8 x 128; k, v 8 x 96; gate, up, down 8 x 192.
TINY_LORA_PARAMS = 2 * 8 * (2 * 128 + 2 * 96 + 3 * 192)


def tiny_options(tiny_folder, tmp_path, **kwargs):
    train = write_jsonl(tmp_path / "toy.jsonl", toy_records(40))
    values = dict(out=str(tmp_path / "run"), model=tiny_folder,
                  train_files=(train,), max_steps=40, eval_every=10,
                  batch_size=4, learning_rate=1e-2, export=(), verbose=0,
                  samples=2, max_new_tokens=4)
    values.update(kwargs)
    return LMFinetuneOptions(**values)


@pytest.fixture(scope="module")
def run(tiny_folder, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("lm_run")
    lines = []
    options = tiny_options(tiny_folder, tmp_path, export=("tflite",),
                           export_max_length=128)
    report = finetune_lm(options, log=lines.append)
    return {"report": report, "lines": lines, "out": options.out}


def test_loss_falls_and_answers_are_learned(run):
    report = run["report"]
    assert report["heldout_loss"] < 0.1 * report["heldout_loss_before"]
    assert report["heldout_perplexity"] < 1.5
    history = report["history"]["loss"]
    assert history[-1] < 0.1 * history[0]
    assert report["test_accuracy_before"] == 0.0
    assert report["test_accuracy"] == 1.0
    # The artifact answers as Keras does, in LiteRT.
    assert report["tflite_test_accuracy"] == report["test_accuracy"]


def test_report_numbers_and_files(run):
    report, out = run["report"], run["out"]
    assert set(RUN_KEYS) <= set(report)
    assert report["trainable_params"] == TINY_LORA_PARAMS
    assert report["adapter_bytes"] == os.path.getsize(
        os.path.join(out, "adapters.safetensors"))
    assert report["tflite_bytes"] == os.path.getsize(os.path.join(out, "model.tflite"))
    assert report["num_examples"] == {"train": 28, "validation": 4, "test": 8}
    assert report["scored_test_examples"] == 8
    assert report["train_seconds"] > 0 and report["steps_run"] == 40
    assert len(report["samples"]) == 2
    assert set(report["samples"][0]) == {"prompt", "reference", "before", "after"}
    assert report["samples"][0]["after"] == report["samples"][0]["reference"]
    assert report["exports"]["tflite"]["tokens_matching"] == \
        report["exports"]["tflite"]["tokens_compared"]
    with open(os.path.join(out, "report.json"), encoding="utf-8") as file:
        assert json.load(file) == report
    with open(os.path.join(out, "training_curves.png"), "rb") as file:
        assert file.read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(out)) == ["adapters.safetensors", "model.tflite",
                                       "report.json", "training_curves.png"]


def test_run_exported_again_as_dynamic_int8(run, tmp_path):
    path = str(tmp_path / "int8.tflite")
    measured = export_lm_run(run["out"], path, tflite_quantize="dynamic")
    assert measured["quantize"] == "dynamic" and measured["path"] == path
    assert measured["next_token_agreement"] >= 0.95  # measured: 1.0
    # The run's 8 test prompts answered in LiteRT as Keras answered them.
    assert measured["test_accuracy"] == measured["keras_test_accuracy"] == 1.0
    # The token embedding's table stays float32 (the default), as do
    # tensors under 1024 values: measured 353,200 of 561,704 bytes.
    assert measured["keep_float"] == list(DEFAULT_TFLITE_KEEP_FLOAT)
    assert os.path.getsize(path) == measured["size_bytes"] < \
        0.65 * run["report"]["tflite_bytes"]
    assert sorted(os.listdir(tmp_path)) == ["int8.tflite"]


def test_exporting_a_classifier_run_is_refused(tmp_path):
    (tmp_path / "report.json").write_text('{"test_accuracy": 0.8}')
    (tmp_path / "adapters.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="is a 'classifier' run; export_lm_run "
                       "exports causal-LM runs"):
        export_lm_run(str(tmp_path), str(tmp_path / "lm.tflite"))
    with pytest.raises(FileNotFoundError, match="has no report.json"):
        export_lm_run(str(tmp_path / "nothing"), str(tmp_path / "lm.tflite"))


def test_progress_line_per_stage(run):
    stages = [line for line in run["lines"] if line.startswith("[")]
    assert stages == [f"[{k}/6] {name} ..." for k, name in enumerate(
        ("data", "model", "train", "evaluate", "export", "report"), start=1)]


def test_bad_line_nothing_written(tiny_folder, tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl",
                      toy_records(4) + [{"question": "q", "answer": "a"}])
    options = tiny_options(tiny_folder, tmp_path, train_files=(bad,))
    with pytest.raises(DataError, match=r"bad.jsonl:5: expected 'prompt' and "):
        finetune_lm(options, log=lambda line: None)
    assert not os.path.exists(options.out)
    assert sorted(os.listdir(tmp_path)) == ["bad.jsonl", "toy.jsonl"]


def test_tokenizer_of_another_vocabulary(tiny_folder, tmp_path):
    tokenizer = write_word_tokenizer(tmp_path / "tokenizer.json", size=64)
    options = tiny_options(tiny_folder, tmp_path, tokenizer_file=tokenizer)
    with pytest.raises(ValueError, match=r"tokenizer.json does not match the "
                       r"model: its ids go up to 63 \(64 tokens\) but the model "
                       r"has a vocabulary of 263"):
        finetune_lm(options, log=lambda line: None)
    assert not os.path.exists(options.out)
