"""`klr.export` in the generation-only formats `"litertlm"` and
`"onnx_genai"`: a tiny Llama checked in LiteRT-LM and ONNX Runtime GenAI,
and everything else refused before anything is written.

LiteRT-LM compares text, so its tokenizer is the word-level one (`w17` is
id 17 both ways); GenAI reads byte-level BPE only, so its tokenizer is the
letter BPE of `test_onnx_genai`.
"""

import json
import os

import pytest

import keras_lowrank as klr
from keras_lowrank import generation
from keras_lowrank.generation import LitertlmReport
from keras_lowrank.generation import OnnxGenAIReport
from keras_lowrank.generation import dispatch_export
from keras_lowrank.generation import export_dispatch
from tests import tiny_models
from tests.generation import tiny_lms
from tests.generation.test_litertlm import TEMPLATE
from tests.generation.test_onnx_genai import write_letter_tokenizer

# `klr.export`'s cache for a RoPE model (no learned positions).
MAX_LENGTH = 256


@pytest.fixture(scope="module")
def word_tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("words")
    path = tiny_lms.write_word_tokenizer(folder / "tokenizer.json")
    with open(folder / "tokenizer_config.json", "w") as file:
        json.dump({"chat_template": TEMPLATE, "bos_token": "<bos>",
                   "eos_token": "<eos>"}, file)
    return path


@pytest.fixture(scope="module")
def letter_tokenizer(tmp_path_factory):
    return write_letter_tokenizer(str(tmp_path_factory.mktemp("letters")))


@pytest.fixture(scope="module")
def classifier():
    return tiny_models.bert_classifier()


@pytest.fixture(scope="module")
def bundle(tiny_models, word_tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("litertlm") / "lm.litertlm"
    return klr.export(tiny_models["llama"], path, "litertlm",
                      tokenizer=word_tokenizer), str(path)


def test_klr_export_writes_a_litertlm_bundle_equal_to_keras(tiny_models, tiny_references,
                                                            bundle):
    from keras_lowrank.generation.litertlm_check import greedy_text
    from keras_lowrank.generation.litertlm_check import open_engine

    report, path = bundle
    assert isinstance(report, LitertlmReport)
    assert report.verified and report.quantize is None
    # Two default prompts, 32 new tokens each, all equal to Keras'.
    assert report.tokens_matching == report.tokens_compared == 64
    assert report.prompts_matching == 2 and report.conversation_matching is True
    assert report.metadata.max_num_tokens == MAX_LENGTH
    assert report.prefill_lengths == (32, 128)
    assert report.size_bytes == os.path.getsize(path)
    assert report.time_to_first_token_ms > 0 and report.decode_tokens_per_s > 0
    # In the engine again, on a prompt of this test's own.
    prompt = [5, 9, 3, 40]
    expected = list(tiny_references(tiny_models["llama"], MAX_LENGTH).tokens(
        [1] + prompt, 8))
    expected = expected[:expected.index(2)] if 2 in expected else expected
    with open_engine(path, MAX_LENGTH) as engine:
        text, _ = greedy_text(engine, tiny_lms.words(prompt), 8)
    assert [int(word[1:]) for word in text.split()] == expected


def test_klr_export_quantizes_a_bundle_dynamically(tiny_models, word_tokenizer,
                                                   tmp_path):
    # `quantize` reaches export_litertlm (its int8 figures are
    # test_litertlm's, on a Llama wide enough for LiteRT to quantize).
    report = klr.export(tiny_models["llama"], tmp_path / "int8.litertlm",
                        "litertlm", quantize="dynamic", tokenizer=word_tokenizer)
    assert isinstance(report, LitertlmReport) and report.quantize == "dynamic"
    assert report.next_token_agreement >= 0.8
    assert os.listdir(tmp_path) == ["int8.litertlm"]


def test_klr_export_writes_a_genai_folder_equal_to_keras(tiny_models, tiny_references,
                                                        letter_tokenizer, tmp_path):
    from keras_lowrank.generation.onnx_genai_check import GenAIGenerator

    folder = tmp_path / "genai"
    report = klr.export(tiny_models["llama"], folder, "onnx_genai",
                        tokenizer=letter_tokenizer)
    assert isinstance(report, OnnxGenAIReport) and report.verified
    # Three default prompts, 32 new tokens each.
    assert report.tokens_matching == report.tokens_compared == 96
    assert report.context_length == MAX_LENGTH
    assert sorted(os.listdir(folder)) == sorted(report.files)
    prompt = [7, 3, 9, 11, 40]
    expected = tiny_references(tiny_models["llama"], MAX_LENGTH).tokens(prompt, 8)
    generator = GenAIGenerator(str(folder))
    tokens = generator.greedy(prompt, 8).tokens
    del generator
    stop = expected.index(2) + 1 if 2 in expected else len(expected)
    assert list(tokens) == list(expected[:stop])


@pytest.mark.parametrize("format", ["litertlm", "onnx_genai"])
def test_a_classifier_is_refused_naming_the_format(classifier, word_tokenizer,
                                                   tmp_path, format):
    with pytest.raises(ValueError, match=(
            rf"^format='{format}' \(.*\) is for generation only: it needs a "
            r"keras-hub causal LM that decodes with a KV cache .*Received: "
            r"BertTextClassifier.*Export this model in a graph format instead: "
            r"one of \['saved_model', 'tflite', 'onnx'\] \(e\.g\. "
            r"format='tflite'\)\. Nothing was written\.$")):
        klr.export(classifier, tmp_path / "out", format, tokenizer=word_tokenizer)
    assert not os.listdir(tmp_path)


def test_tokenizer_is_refused_for_a_graph_export(classifier, word_tokenizer, tmp_path):
    with pytest.raises(ValueError, match=(
            r"^`tokenizer` \(a tokenizer.json\) only applies to a keras-hub "
            r"causal LM with a KV cache, exported for generation; "
            r"format='tflite' exports this model as a graph, which takes "
            rf"none\. Received: tokenizer='{word_tokenizer}'\. Leave")):
        klr.export(classifier, tmp_path / "c.tflite", "tflite",
                   tokenizer=word_tokenizer)
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("format", ["litertlm", "onnx_genai"])
def test_a_missing_tokenizer_says_to_pass_it(tiny_models, tmp_path, format):
    with pytest.raises(ValueError, match=(
            rf"^format='{format}' writes the model's Hugging Face "
            r"tokenizer.json into the .*Received: tokenizer=None\. Pass "
            r"tokenizer='path/to/tokenizer.json'")):
        klr.export(tiny_models["llama"], tmp_path / "out", format)
    with pytest.raises(FileNotFoundError, match=r"Received: tokenizer='.*nothing"
                       r"\.json', which is not a file"):
        klr.export(tiny_models["llama"], tmp_path / "out", format,
                   tokenizer=tmp_path / "nothing.json")
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("format, options, message", [
    ("litertlm", {"quantize": "int8"},
     r"^format='litertlm' supports quantize in \[None, 'dynamic'\]\. "
     r"Received: quantize='int8'$"),
    ("onnx_genai", {"quantize": "dynamic"},
     r"^format='onnx_genai' supports quantize in \[None, 'int4', 'int8'\]\. "
     r"Received: quantize='dynamic'$"),
    ("litertlm", {"atol": 0.1},
     r"^format='litertlm' exports a causal LM for generation .*takes none "
     r"of \['atol'\].* Received: atol=0\.1$"),
])
def test_options_a_runtime_format_does_not_take(tiny_models, word_tokenizer,
                                                tmp_path, format, options, message):
    with pytest.raises(ValueError, match=message):
        klr.export(tiny_models["llama"], tmp_path / "out", format,
                   tokenizer=word_tokenizer, **options)
    assert not os.listdir(tmp_path)


def test_a_path_holding_other_files_is_refused(tiny_models, letter_tokenizer, tmp_path):
    (tmp_path / "genai").mkdir()
    (tmp_path / "genai" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"genai' is an existing folder "
                       r"holding other files \(notes.txt\), not an earlier "
                       r"output of this kind \(a folder with genai_config.json "
                       r"and model.onnx\)"):
        klr.export(tiny_models["llama"], tmp_path / "genai", "onnx_genai",
                   tokenizer=letter_tokenizer)
    assert os.listdir(tmp_path / "genai") == ["notes.txt"]


def test_the_hook_passes_tokenizer_to_export_generator(tiny_models, monkeypatch,
                                                       word_tokenizer):
    calls = []
    monkeypatch.setattr(export_dispatch, "export_generator",
                        lambda *args, **kwargs: calls.append((args, kwargs)))
    dispatch_export(tiny_models["gpt2"], "lm.tflite", "tflite",
                    tokenizer=word_tokenizer, quantize="dynamic")
    ((args, kwargs),) = calls
    assert args[2] == "tflite"
    # GPT-2's 64 learned positions bound the cache.
    assert kwargs == {"max_length": 64, "tokenizer": word_tokenizer,
                      "quantize": "dynamic", "verify": True,
                      "runtime_adapters": False}


def test_the_formats_are_public():
    assert generation.GENERATION_FORMATS == ("tflite", "onnx", "litertlm",
                                             "onnx_genai")
    assert list(generation.RUNTIME_FORMATS) == ["litertlm", "onnx_genai"]
    for name in ("GENERATION_FORMATS", "RUNTIME_FORMATS", "LitertlmReport",
                 "OnnxGenAIReport", "check_runtime_arguments", "export_litertlm",
                 "export_onnx_genai", "write_litertlm_adapter",
                 "write_litertlm_base_adapter", "write_onnx_genai_adapter",
                 "write_runtime_adapter"):
        assert name in generation.__all__ and hasattr(generation, name)
    # What the README calls: `klr.write_runtime_adapter(lm, artifact, path)`.
    assert klr.write_runtime_adapter is generation.write_runtime_adapter
    assert "write_runtime_adapter" in klr.__all__


def test_klr_export_options_take_every_mode_of_the_runtime_formats():
    from keras_lowrank.exporters import ExportOptions

    modes = {m for record in generation.RUNTIME_FORMATS.values()
             for m in record.quantize_modes}
    assert modes == {None, "dynamic", "int4", "int8"}
    for mode in modes:
        assert ExportOptions(quantize=mode).quantize == mode


def test_runtime_adapters_pass_through_klr_export(tiny_models, tmp_path):
    """`klr.export(..., runtime_adapters=True)` keeps the factors as inputs
    of a generator (`export_generator`'s runtime adapters)."""
    adapted = klr.add_adapters(tiny_models["llama"], rank=2, targets=["query"])
    report = klr.export(adapted, tmp_path / "base.onnx", "onnx",
                        runtime_adapters=True)
    assert [entry[0] for entry in report.spec.adapters] == [
        "transformer_layer_0/self_attention/query",
        "transformer_layer_1/self_attention/query"]
    assert report.tokens_compared == report.tokens_matching > 0
