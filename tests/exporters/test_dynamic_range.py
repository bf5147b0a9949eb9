"""`quantize_dynamic_range`: LiteRT's own dynamic-range int8, byte for byte,
plus layers left in float on request."""

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from keras_lowrank.exporters.dynamic_range import quantize_dynamic_range


@pytest.fixture(scope="module")
def flatbuffers():
    """`(float, converter's dynamic-range int8)` of an embedding and two
    dense layers (the second's 32 x 16 kernel is under 1024 values), then
    a tanh."""
    rng = np.random.default_rng(3)
    table = tf.constant(rng.normal(size=(300, 64)), tf.float32)
    up = tf.constant(rng.normal(size=(64, 32)) / 8, tf.float32)
    small = tf.constant(rng.normal(size=(32, 16)) / 6, tf.float32)

    @tf.function(input_signature=[tf.TensorSpec((1, 6), tf.int32, name="tokens")])
    def forward(tokens):
        x = tf.gather(table, tokens, name="token_embedding")
        x = tf.nn.gelu(tf.matmul(x, up, name="up_dense"))
        return tf.tanh(tf.matmul(x, small, name="small_dense"))

    built = []
    for optimizations in ([], [tf.lite.Optimize.DEFAULT]):
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [forward.get_concrete_function()])
        converter.optimizations = optimizations
        built.append(converter.convert())
    return tuple(built)


def _run(flatbuffer, tokens):
    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tokens)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _weights(flatbuffer):
    """`{dtype: [array, ...]}` of the constant tensors over 1000 values."""
    interpreter = Interpreter(model_content=flatbuffer)
    found = {}
    for detail in interpreter.get_tensor_details():
        if np.prod(detail["shape"]) < 1000:
            continue
        try:
            value = interpreter.get_tensor(detail["index"])
        except ValueError:
            continue
        found.setdefault(value.dtype.name, []).append(value)
    return found


def test_same_artifact_as_the_converter(flatbuffers):
    float_model, converter_int8 = flatbuffers
    ours, kept = quantize_dynamic_range(float_model)
    assert kept == ()
    tokens = np.array([[1, 7, 299, 42, 0, 5]], np.int32)
    # The same int8 weights (embedding per tensor, up_dense per channel),
    # the small kernel left in float, and the same outputs, exactly.
    theirs, mine = _weights(converter_int8), _weights(ours)
    assert sorted(a.shape for a in mine["int8"]) == [(32, 64), (300, 64)]
    assert sorted(a.tobytes() for a in mine["int8"]) == sorted(
        a.tobytes() for a in theirs["int8"])
    assert np.array_equal(_run(ours, tokens), _run(converter_int8, tokens))
    reference = _run(float_model, tokens)
    # Measured: 0.025 at most (outputs of up to 0.93).
    assert 0 < np.abs(_run(ours, tokens) - reference).max() < 0.06
    assert abs(len(ours) - len(converter_int8)) < 0.05 * len(converter_int8)


def test_kept_layers_stay_float(flatbuffers):
    float_model, _ = flatbuffers
    ours, kept = quantize_dynamic_range(float_model, keep_float=("up_dense",))
    assert len(kept) == 1 and "up_dense" in kept[0]
    weights = _weights(ours)
    assert [a.shape for a in weights["int8"]] == [(300, 64)]
    assert (32, 64) in [a.shape for a in weights["float32"]]
    tokens = np.array([[3, 1, 4, 1, 5, 9]], np.int32)
    # Only the embedding is rounded now: the mean error shrinks (measured
    # 0.0033 against 0.0044 with up_dense in int8 too).
    all_int8, _ = quantize_dynamic_range(float_model)
    reference = _run(float_model, tokens)
    kept_error = np.abs(_run(ours, tokens) - reference).mean()
    assert 0 < kept_error < np.abs(_run(all_int8, tokens) - reference).mean()
    # Everything in float: the float model's outputs, exactly.
    none, kept = quantize_dynamic_range(float_model,
                                        keep_float=("up_dense", "token_embedding"))
    assert len(kept) == 2
    assert np.array_equal(_run(none, tokens), reference)


@pytest.mark.parametrize("keep_float, message", [
    (("feedforward_output",), r"keep_float=\['feedforward_output'\]: "
                              r"\['feedforward_output'\] match no FULLY_CONNECTED"),
    (("up_dense", "(",), r"keep_float holds '\(', not a regular expression"),
])
def test_bad_patterns_are_named(flatbuffers, keep_float, message):
    with pytest.raises(ValueError, match=message):
        quantize_dynamic_range(flatbuffers[0], keep_float=keep_float)


def test_a_layer_too_small_to_quantize_may_be_named(flatbuffers):
    # small_dense (512 values) stays float either way: no error, no change.
    ours, kept = quantize_dynamic_range(flatbuffers[0], keep_float=("small_dense",))
    assert kept == ()
    assert ours == quantize_dynamic_range(flatbuffers[0])[0]
