"""`keras-lowrank export MODEL --format litertlm|onnx_genai`: a SmolLM2-like
Hugging Face folder exported with its own tokenizer.json, and the one-line
errors of everything these formats refuse, before anything is written."""

import filecmp
import json
import os

import pytest

from keras_lowrank.cli.main import main
from keras_lowrank.models.gguf_folder import gguf_to_hf_folder
from tests import tiny_models
from tests.generation.tiny_lms import write_tiny_gguf
from tests.lm_finetune.conftest import CHAT_TEMPLATE

pytest.importorskip("litert_lm")
pytest.importorskip("onnxruntime_genai")


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A tiny Llama Hugging Face folder: byte-level BPE of 263 tokens,
    SmolLM2's chat template, `<|im_end|>` as its end token."""
    root = tmp_path_factory.mktemp("tiny_hf")
    write_tiny_gguf(root / "tiny.gguf")
    folder = gguf_to_hf_folder(root / "tiny.gguf", root / "hf")
    path = root / "hf" / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config.update(chat_template=CHAT_TEMPLATE, eos_token="<|im_end|>")
    path.write_text(json.dumps(config))
    return str(folder)


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("classifier") / "classifier.keras"
    tiny_models.bert_classifier().save(path)
    return str(path)


def export(capsys, *argv):
    status = main(["export", *argv])
    return status, capsys.readouterr()


def test_a_folder_exports_to_litertlm_with_its_tokenizer(hf_folder, tmp_path, capsys):
    out = tmp_path / "tiny.litertlm"
    status, printed = export(capsys, hf_folder, "--format", "litertlm",
                             "--out", str(out))
    assert status == 0, printed.err
    lines = printed.out.splitlines()
    assert lines[0] == (f"LiteRT-LM bundle (Llama3CausalLM, float32): {out} "
                        f"({os.path.getsize(out) / 1e6:.1f} MB)")
    # Start and stop tokens from the folder's tokenizer_config.json.
    assert lines[1] == ("context 256 tokens, prefill lengths [32, 128], start "
                        "token 1, stop tokens [2], chat template yes")
    # The engine's text equals Keras' on both default prompts.
    assert "(2/2 prompts, lengths [24, 18]); chat reply equal to Keras: True" in lines[2]
    assert os.listdir(tmp_path) == ["tiny.litertlm"]


def test_a_folder_exports_to_onnx_genai_with_its_tokenizer(hf_folder, tmp_path, capsys):
    out = tmp_path / "genai"
    status, printed = export(capsys, hf_folder, "--format", "onnx_genai",
                             "--out", str(out))
    assert status == 0, printed.err
    assert printed.out.startswith(f"ONNX Runtime GenAI folder: {out} (")
    assert ("greedy tokens equal to Keras in onnxruntime-genai "
            in printed.out)
    assert ": 96/96 (3/3 prompts" in printed.out
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert filecmp.cmp(out / name, os.path.join(hf_folder, name), shallow=False)
    assert sorted(os.listdir(out)) == ["genai_config.json", "model.onnx",
                                       "tokenizer.json", "tokenizer_config.json"]


def _one_line_error(status, printed, *parts):
    assert status == 2
    assert printed.err.count("\n") == 1
    assert printed.err.startswith("keras-lowrank export: error: ")
    for part in parts:
        assert part in printed.err


@pytest.mark.parametrize("format", ["litertlm", "onnx_genai"])
def test_a_folder_without_tokenizer_names_the_flag(tmp_path, capsys, format):
    model = tmp_path / "model"
    model.mkdir()
    status, printed = export(capsys, str(model), "--format", format,
                             "--out", str(tmp_path / "out"))
    _one_line_error(status, printed,
                    f"--format {format} puts the model's Hugging Face "
                    f"tokenizer.json into the artifact, and MODEL '{model}' holds "
                    "no tokenizer.json. Pass --tokenizer PATH")
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_a_keras_file_needs_the_tokenizer_flag(classifier_file, tmp_path, capsys):
    status, printed = export(capsys, classifier_file, "--format", "litertlm",
                             "--out", str(tmp_path / "c.litertlm"))
    _one_line_error(status, printed, f"MODEL '{classifier_file}' is not a model "
                    "folder. Pass --tokenizer PATH")
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("format, messages", [
    ("litertlm", ("format='litertlm' (LiteRT-LM bundle) is for generation only",
                  "Received: BertTextClassifier",
                  "(e.g. format='tflite'). Nothing was written.")),
    ("tflite", ("`tokenizer` (a tokenizer.json) only applies to a keras-hub causal "
                "LM with a KV cache",)),
])
def test_a_classifier_with_a_tokenizer_is_refused(format, messages, classifier_file,
                                                  hf_folder, tmp_path, capsys):
    status, printed = export(
        capsys, classifier_file, "--format", format, "--tokenizer",
        os.path.join(hf_folder, "tokenizer.json"), "--out", str(tmp_path / f"c.{format}"))
    _one_line_error(status, printed, *messages)
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("argv, message", [
    (["--format", "litertlm", "--quantize", "int8"],
     "format='litertlm' supports quantize in [None, 'dynamic']. Received: "
     "quantize='int8'"),
    (["--format", "onnx_genai", "--quantize", "dynamic"],
     "format='onnx_genai' supports quantize in [None, 'int4', 'int8']"),
    (["--format", "onnx_genai", "--opset", "17"],
     "format='onnx_genai' exports a causal LM for generation"),
])
def test_options_the_format_does_not_take(hf_folder, tmp_path, capsys, argv, message):
    status, printed = export(capsys, hf_folder, *argv, "--out", str(tmp_path / "out"))
    _one_line_error(status, printed, message)
    assert not os.listdir(tmp_path)


def test_an_out_holding_other_files_fails_before_the_model_loads(tmp_path, capsys):
    # MODEL is not even a model: --out is checked first.
    model = tmp_path / "model"
    model.mkdir()
    (model / "tokenizer.json").write_text("{}")
    out = tmp_path / "genai"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    status, printed = export(capsys, str(model), "--format", "onnx_genai",
                             "--out", str(out))
    _one_line_error(status, printed, "holding other files (notes.txt)")
    assert os.listdir(out) == ["notes.txt"]
