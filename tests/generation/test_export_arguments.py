"""The argument checks every generation exporter shares (`export_arguments`)."""

import types

import numpy as np
import pytest

from keras_lowrank.generation import cached_causal_lm
from keras_lowrank.generation import export_arguments as arguments


def _model(dtype="float32", positions=64, add_start=True):
    tokenizer = types.SimpleNamespace(start_token_id=1, end_token_id=2)
    return types.SimpleNamespace(
        compute_dtype=dtype,
        backbone=types.SimpleNamespace(max_sequence_length=positions),
        preprocessor=types.SimpleNamespace(tokenizer=tokenizer,
                                           add_start_token=add_start))


def test_check_exportable_names_the_exporter_and_the_received_value():
    cached_causal_lm.check_exportable(_model(), 64, "export_litertlm")
    with pytest.raises(ValueError, match=r"^export_litertlm exports float32 "
                       r"models. Received: SimpleNamespace computing in "
                       r"bfloat16. Load it with dtype='float32'.$"):
        cached_causal_lm.check_exportable(_model("bfloat16"), 64, "export_litertlm")
    with pytest.raises(ValueError, match=r"embeds at most 64 positions "
                       r"\(max_sequence_length\). Received: max_length=65$"):
        cached_causal_lm.check_exportable(_model(), 65, "export_onnx_genai")
    cached_causal_lm.check_exportable(_model(positions=None), 10_000, "x")


def test_preprocessor_tokens():
    assert cached_causal_lm.preprocessor_token(_model(), "end_token_id") == 2
    assert cached_causal_lm.preprocessor_token(object(), "end_token_id") is None
    assert cached_causal_lm.added_start_token(_model()) == 1
    assert cached_causal_lm.added_start_token(_model(add_start=False)) is None


@pytest.mark.parametrize("value", [0, -1, 1.0, True, "8", None])
def test_positive_int_refused(value):
    with pytest.raises(ValueError, match=r"^`n` must be a positive integer. "
                       rf"Received: n={value!r}$"):
        arguments.check_positive_int("n", value)


def test_positive_int_accepts_numpy_and_returns_int():
    value = arguments.check_positive_int("n", np.int64(8))
    assert value == 8 and type(value) is int


def test_prefill_lengths():
    assert arguments.check_prefill_lengths(None, 256) == (32, 128)
    assert arguments.check_prefill_lengths(None, 16) == (16,)
    assert arguments.check_prefill_lengths([8, np.int32(4), 8], 16) == (4, 8)
    with pytest.raises(ValueError, match=r"non-empty list of positive integers"):
        arguments.check_prefill_lengths((), 16)
    with pytest.raises(ValueError, match=r"cache \(max_length=16\) is shorter "
                       r"than the longest prefill length \(32\)"):
        arguments.check_prefill_lengths((8, 32), 16)


def test_quantize_and_min_agreement():
    arguments.check_quantize("dynamic", np.float32(0.5))
    with pytest.raises(ValueError, match=r"Unrecognized quantize='int8' for "
                       r"generation export. Supported modes are: \[None, 'dynamic'\]"):
        arguments.check_quantize("int8", 0.8)
    for bad in (1.5, -0.1, True, "0.8"):
        with pytest.raises(ValueError, match=r"`min_agreement` must be a number in \[0, 1\]"):
            arguments.check_quantize(None, bad)


def test_text_prompts():
    assert arguments.check_text_prompts(None, ["a"]) == ("a",)
    assert arguments.check_text_prompts(["x", "y"], ["a"]) == ("x", "y")
    for bad in ("x", [], [""], [[1, 2]], iter(["x"])):
        with pytest.raises(ValueError, match=r"non-empty list of non-empty strings"):
            arguments.check_text_prompts(bad, ["a"])


def test_token_ids_and_start_token():
    assert arguments.check_token_ids("stop_token_ids", [np.int64(2)], 64) == (2,)
    assert arguments.check_token_ids("stop_token_ids", (), 64) == ()
    for bad in ((64,), "2", 2, (True,)):
        with pytest.raises(ValueError, match=r"`stop_token_ids` must be token ids in \[0, 64\)"):
            arguments.check_token_ids("stop_token_ids", bad, 64)
    assert arguments.start_token(_model(), None, 64) == 1
    assert arguments.start_token(_model(add_start=False), None, 64) is None
    assert arguments.start_token(_model(), 5, 64) == 5
    with pytest.raises(ValueError, match=r"`start_token_id` must be a token id "
                       r"in \[0, 64\). Received: start_token_id=64"):
        arguments.start_token(_model(), 64, 64)


def test_file_path(tmp_path):
    assert arguments.check_file_path(tmp_path / "a.tflite", "x") == str(tmp_path / "a.tflite")
    with pytest.raises(ValueError, match=r"`path` must be a non-empty file path"):
        arguments.check_file_path("", "x")
    with pytest.raises(ValueError, match=r"export_litertlm writes a file, but .* "
                       r"is an existing folder"):
        arguments.check_file_path(tmp_path, "export_litertlm")
