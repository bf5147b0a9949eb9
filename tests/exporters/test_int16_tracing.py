"""The three private Keras functions `_int16_tracing` swaps while tracing."""

import importlib

import numpy as np
import tensorflow as tf

from keras_lowrank.exporters import _int16_tracing
from keras_lowrank.exporters.signature import input_signature
from keras_lowrank.exporters.signature import serving_function
from tests.tiny_models import bert_classifier
from tests.tiny_models import bert_inputs


def test_the_swapped_functions_are_where_the_module_expects_them():
    for module, name in (_int16_tracing.TAKE, _int16_tracing.MOMENTS,
                         _int16_tracing.MASK_VALUE):
        assert callable(getattr(importlib.import_module(module), name))
    softmax = importlib.import_module(_int16_tracing.MASK_VALUE[0])
    assert softmax._large_negative_number("float32") == -1e9


def test_each_function_is_restored_after_tracing():
    before = [
        getattr(importlib.import_module(m), n)
        for m, n in (_int16_tracing.TAKE, _int16_tracing.MOMENTS,
                     _int16_tracing.MASK_VALUE)
    ]
    with _int16_tracing.int16_friendly_tracing():
        pass
    after = [
        getattr(importlib.import_module(m), n)
        for m, n in (_int16_tracing.TAKE, _int16_tracing.MOMENTS,
                     _int16_tracing.MASK_VALUE)
    ]
    assert before == after


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
    with _int16_tracing.int16_friendly_tracing():
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
