"""`klr.export` and `keras-lowrank export` on a causal LM write generation
artifacts (through `dispatch_export`), equal to Keras token for token."""

import os

import pytest

import keras_lowrank as klr
from keras_lowrank.cli.main import main
from keras_lowrank.generation import GenerationReport
from keras_lowrank.generation import load_generator
from tests.generation import tiny_lms

PROMPTS = ([5], [7, 3, 9, 11, 40], list(range(3, 40)))


def test_klr_export_writes_generators_equal_token_for_token(tiny_models, tiny_references,
                                                           tmp_path):
    model = tiny_models["llama"]
    reports = {format: klr.export(model, tmp_path / f"lm.{format}", format)
               for format in ("tflite", "onnx")}
    for format, report in reports.items():
        assert isinstance(report, GenerationReport)
        assert report.format == format and report.quantize is None
        assert report.tokens_compared == report.tokens_matching == 8 * 32
        assert report.spec.max_length == 256
    assert reports["tflite"].spec.prefill_lengths == (32, 128)
    litert = load_generator(tmp_path / "lm.tflite")
    onnx = load_generator(tmp_path / "lm.onnx")
    reference = tiny_references(model, 256)  # Keras' decode step traced once
    for prompt in PROMPTS:
        expected = reference.tokens(prompt, 24)
        assert litert.greedy(prompt, 24).tokens == expected
        assert onnx.greedy(prompt, 24).tokens == expected


@pytest.mark.parametrize("kwargs, named", [
    ({"atol": 1e-3}, r"\['atol'\].*Received: atol=0.001"),
    ({"sample_inputs": {"token_ids": [[1]]}, "opset": 17},
     r"\['sample_inputs', 'opset'\]"),
    ({"metadata": "text_classifier"}, r"\['metadata'\]"),
])
def test_klr_export_refuses_what_generation_does_not_take(tiny_models, tmp_path,
                                                          kwargs, named):
    with pytest.raises(ValueError, match=r"Llama3CausalLM is exported for "
                       r"generation .*takes none of " + named) as info:
        klr.export(tiny_models["llama"], tmp_path / "lm.tflite", "tflite",
                   **kwargs)
    assert "\n" not in str(info.value)
    assert not os.listdir(tmp_path)


def test_the_hook_takes_klr_export_options_whole(tiny_models, tmp_path):
    from keras_lowrank.exporters import ExportOptions
    from keras_lowrank.generation import dispatch_export

    model = tiny_models["llama"]
    options = ExportOptions(quantize="dynamic", allow_flex=True, atol=0.1)
    with pytest.raises(ValueError, match=r"takes none of \['allow_flex', 'atol'\]"
                       r"; .* Received: allow_flex=True, atol=0\.1$"):
        dispatch_export(model, tmp_path / "lm.tflite", "tflite", options)
    # Keyword arguments are the same options; not both at once.
    with pytest.raises(ValueError, match=r"takes none of \['atol'\]"):
        dispatch_export(model, tmp_path / "lm.tflite", "tflite", atol=0.1)
    with pytest.raises(TypeError, match=r"^dispatch_export\(\) takes its options "
                       r"as keyword arguments or as `options=ExportOptions"):
        dispatch_export(model, tmp_path / "lm.tflite", "tflite", options, verify=False)
    assert dispatch_export(model, tmp_path / "lm", "saved_model", options) is None
    assert not os.listdir(tmp_path)


def test_cli_export_of_a_causal_lm_file(tiny_models, tiny_references, tmp_path,
                                       capsys):
    model = tiny_models["gpt2"]
    path = tmp_path / "gpt2.keras"
    model.save(path)
    out = tmp_path / "gpt2.tflite"
    assert main(["export", str(path), "--format", "tflite", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"tflite generator: {out} ")
    assert "greedy tokens equal to Keras: 256/256 (8/8 prompts" in printed
    generator = load_generator(out)
    assert generator.spec.max_length == tiny_lms.MAX_LENGTH  # GPT-2's positions
    prompt = [9, 8, 7]
    # Keras' decode step of GPT-2 on its 64 positions, traced once a session
    # (test_export_generator's GPT-2 generators check against it too).
    expected = tiny_references(model, tiny_lms.MAX_LENGTH).tokens(prompt, 20)
    assert generator.greedy(prompt, 20).tokens == expected


def test_cli_export_refuses_an_option_generation_does_not_take(tiny_models,
                                                               tmp_path, capsys):
    path = tmp_path / "lm.keras"
    tiny_models["gemma"].save(path)
    out = tmp_path / "lm.onnx"
    assert main(["export", str(path), "--format", "onnx", "--out", str(out),
                 "--atol", "0.01"]) == 2
    error = capsys.readouterr().err
    assert "GemmaCausalLM is exported for generation" in error
    assert not out.exists()
