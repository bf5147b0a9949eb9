"""`int16_friendly_tracing`: the traced model computes what Keras computes,
without the ops LiteRT's 16x8 quantizer cannot handle. Where Keras keeps the
three functions it swaps is checked in `tests/compat/test_keras.py`."""

import numpy as np
import tensorflow as tf

from keras_lowrank._compat import keras as keras_compat
from keras_lowrank.exporters import int16_tracing
from keras_lowrank.exporters.signature import input_signature
from keras_lowrank.exporters.signature import serving_function
from tests.tiny_models import bert_classifier
from tests.tiny_models import bert_inputs


def _keras_functions():
    return (keras_compat.backend_take(), keras_compat.backend_moments(),
            keras_compat.softmax_mask_value())


def test_each_function_is_swapped_while_tracing_and_restored_after():
    before = _keras_functions()
    with int16_tracing.int16_friendly_tracing():
        during = _keras_functions()
        assert during[2]("float32") == int16_tracing.MASKED_SCORE
    assert all(a is not b for a, b in zip(before, during))
    assert _keras_functions() == before


def _graph_ops(function):
    graph = function.get_concrete_function().graph.as_graph_def()
    ops = {node.op for node in graph.node}
    for library_function in graph.library.function:
        ops.update(node.op for node in library_function.node_def)
    return ops


def test_the_traced_model_computes_what_keras_computes_without_the_ops():
    model = bert_classifier()
    inputs = bert_inputs(batch=3)
    signature = input_signature(model)
    plain = serving_function(model, signature)
    with int16_tracing.int16_friendly_tracing():
        friendly = serving_function(model, signature)
        friendly.get_concrete_function()  # traced here
    expected = np.asarray(model(inputs, training=False))
    got = friendly({k: tf.constant(v) for k, v in inputs.items()})["output_0"]
    # Same function: the masked score is -100 instead of -1e9, and the
    # variance is computed in another order.
    assert np.max(np.abs(np.asarray(got) - expected)) < 1e-5
    assert "SquaredDifference" in _graph_ops(plain)
    assert "SquaredDifference" not in _graph_ops(friendly)
    # The index guards of `take` (Less, AddV2, SelectV2 on the ids of the
    # three embeddings) are gone.
    assert _count(friendly, "SelectV2") < _count(plain, "SelectV2")
    assert _count(friendly, "Less") < _count(plain, "Less")


def _count(function, op):
    graph = function.get_concrete_function().graph.as_graph_def()
    nodes = list(graph.node) + [
        node for f in graph.library.function for node in f.node_def
    ]
    return sum(node.op == op for node in nodes)
