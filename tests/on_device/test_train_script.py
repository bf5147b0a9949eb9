"""`export/train_on_device.py`: raw text in, an adapter file out, with
LiteRT and no TensorFlow or Keras in the process."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.on_device.trainer import OnDeviceTrainer
from tests import tiny_models

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "export", "train_on_device.py")
TEXTS = ["a great movie", "the plot was awful", "good", "awful awful plot",
         "the movie was great", "a good plot"]
# Runs the script in this process' interpreter, then says which libraries it
# imported.
RUN = (
    "import runpy, sys, json\n"
    "sys.argv = ['train_on_device.py'] + json.loads(sys.argv[1])\n"
    "try:\n"
    "    runpy.run_path({script!r}, run_name='__main__')\n"
    "except SystemExit as exit:\n"
    "    code = exit.code\n"
    "print(json.dumps({{'code': code, 'tf': 'tensorflow' in sys.modules,\n"
    "                  'keras': 'keras' in sys.modules}}))\n"
).format(script=SCRIPT)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    folder = tmp_path_factory.mktemp("script")
    keras.utils.set_random_seed(0)
    model = klr.add_adapters(tiny_models.bert_classifier_with_preprocessor(), rank=2)
    path = folder / "personal.tflite"
    training = klr.OnDeviceTraining(batch_size=4, optimizer="sgd", learning_rate=0.5)
    report = klr.export(model, str(path), "tflite", labels=["negative", "positive"],
                        on_device_training=training)
    assert report.tokenizer == "wordpiece"
    data = folder / "train.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": ["positive", "negative"][i % 2]})
                            + "\n" for i, t in enumerate(TEXTS)))
    return model, path, data


def run(*argv):
    result = subprocess.run([sys.executable, "-c", RUN, json.dumps([str(a) for a in argv])],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    status = json.loads(result.stdout.splitlines()[-1])
    return status, result.stdout, result.stderr


def test_trains_on_text_and_writes_an_adapter_file(artifact, tmp_path):
    model, path, data = artifact
    out = tmp_path / "adapter.safetensors"
    status, printed, err = run(path, "--train", data, "--epochs", "3", "--out", out,
                               "--eval", data, "--json")
    assert status == {"code": 0, "tf": False, "keras": False}, err
    report = json.loads(printed.splitlines()[-2])
    losses = [epoch["mean_loss"] for epoch in report["epochs"]]
    # 6 rows in batches of 4: two steps an epoch, the second filled from the first rows.
    assert [epoch["steps"] for epoch in report["epochs"]] == [2, 2, 2]
    assert losses[-1] < losses[0]
    assert 0.0 <= report["accuracy_before"] <= 1.0 and report["out"] == str(out)
    # The file loads onto the base on the host, where Keras on raw text
    # equals the artifact with the same factors.
    # B starts at zero, so the merged model is the base the file loads onto.
    host = klr.load_adapters(klr.merge_adapters(model), str(out))
    trainer = OnDeviceTrainer(path)
    trainer.restore({k: np.asarray(v) for k, v in _file_factors(out).items()})
    tokens = {k: np.asarray(v) for k, v in model.preprocessor(TEXTS[:4]).items()}
    host.preprocessor = None
    np.testing.assert_allclose(np.asarray(host(tokens)), trainer.infer(tokens), atol=1e-4)


def test_bad_input_is_one_line_and_writes_nothing(artifact, tmp_path):
    _, path, _ = artifact
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "good", "label": "positive"}\n{"text": "x", "label": "meh"}\n')
    out = tmp_path / "adapter.safetensors"
    status, _, err = run(path, "--train", bad, "--out", out)
    assert status["code"] == 2
    assert len(err.strip().splitlines()) == 1 and "meh" in err
    assert not out.exists()


def _file_factors(path):
    from safetensors.numpy import load_file

    return load_file(str(path))


def test_a_causal_lm_trains_on_prompt_completion_pairs(tmp_path):
    from keras_lowrank.lm_finetune.causal_lm_loading import load_causal_lm
    from keras_lowrank.models.gguf_folder import gguf_to_hf_folder
    from tests.generation.tiny_lms import write_tiny_gguf

    write_tiny_gguf(tmp_path / "tiny.gguf")
    folder = gguf_to_hf_folder(tmp_path / "tiny.gguf", tmp_path / "hf")
    config_path = tmp_path / "hf" / "tokenizer_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()),
                                       "eos_token": "<|im_end|>"}))
    model = klr.add_adapters(load_causal_lm(str(folder)), rank=2)
    path = tmp_path / "lm.tflite"
    report = klr.export(model, str(path), "tflite", tokenizer=str(tmp_path / "hf" / "tokenizer.json"),
                        on_device_training=klr.OnDeviceTraining(
                            batch_size=2, sequence_length=16, optimizer="adam",
                            learning_rate=0.01))
    assert report.tokenizer == "tokenizer.json"
    metadata = OnDeviceTrainer(path).metadata
    assert metadata["tokenizer"]["end_token_id"] == 2  # <|im_end|>, from tokenizer_config.json
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in [
        ("hello ", "hello"), ("he", "llo"), ("ll", "o hell"), ("o", " hello")]))
    out = tmp_path / "adapter.safetensors"
    status, printed, err = run(path, "--train", data, "--epochs", "4", "--out", out,
                               "--eval", data, "--json")
    assert status == {"code": 0, "tf": False, "keras": False}, err
    report = json.loads(printed.splitlines()[-2])
    assert report["task"] == "causal_lm" and report["train_rows"] == 4
    assert report["eval_loss_after"] < report["eval_loss_before"]
    # Back on the host: the file's factors give Keras the artifact's logits.
    trainer = OnDeviceTrainer(path)
    trainer.restore(_file_factors(out))
    tokens = np.random.default_rng(0).integers(1, 200, (2, 16)).astype("int32")
    inputs = {"token_ids": tokens, "padding_mask": np.ones((2, 16), bool)}
    host = klr.load_adapters(model, trainer.save())
    np.testing.assert_allclose(np.asarray(host(inputs)), trainer.infer(inputs), atol=1e-4)
