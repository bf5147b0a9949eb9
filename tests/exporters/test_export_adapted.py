"""Models from `klr.add_adapters`, exported in every format through `klr.export`.

The adapters get random non-zero `lora_b`, so the delta `s·A·B` changes the
outputs: an artifact that dropped it would match the base model instead. The
merged artifact has no adapter path: no name in it mentions LoRA, and it
holds the same ops, as many of each, as the base model's artifact. (Names
alone would not show it for TFLite and ONNX: an unmerged adapter path is
named after the layer there, `query_1/MatMul_1`, and only SavedModel keeps
`lora_a`.)
"""

import collections
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lowrank as klr
from keras_lowrank.adapters.adapted_model import adapters
from tests.exporters.helpers import RUNNERS
from tests.exporters.helpers import bert_classifier
from tests.exporters.helpers import dense_model
from tests.exporters.helpers import keras_call
from tests.exporters.helpers import max_abs_diff
from tests.exporters.helpers import runtime_inputs

FORMATS = ("saved_model", "tflite", "onnx")
EXTENSIONS = {"saved_model": "", "tflite": ".tflite", "onnx": ".onnx"}
MODELS = ("dense", "bert")
CASES = [(name, format) for name in MODELS for format in FORMATS]
# `add_adapters` arguments of each model, and how many layers they adapt.
# BERT: every Dense and EinsumDense of the 2 blocks (6 each) and the pooler;
# with only query and value adapted, its logits (~0.01, an untrained head)
# would move by less than 1e-3.
ADAPTERS = {
    "dense": ({"rank": 1, "targets": ("hidden", "scores", "value")}, 3),
    "bert": ({"rank": 4, "targets": "all-linear"}, 13),
}
TOLERANCE = 1e-4
# The artifact must differ from the base model by 100 times the tolerance at
# least, so that the delta cannot hide in rounding (measured: 0.03 to 0.6).
DELTA_FLOOR = 100 * TOLERANCE


def _adapted(base, overrides, seed):
    model = klr.add_adapters(base, **overrides)
    rng = np.random.default_rng(seed)
    for layer in adapters(model).values():
        shape = tuple(layer.lora_b.shape)
        layer.lora_b.assign(rng.normal(0.0, 0.2, shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def models():
    """`{name: (base model, adapted model)}`; the base is left untouched."""
    keras.utils.set_random_seed(11)
    built = {"dense": dense_model(), "bert": bert_classifier()}
    return {
        name: (base, _adapted(base, ADAPTERS[name][0], seed=len(name)))
        for name, base in built.items()
    }


@pytest.fixture(scope="module")
def reports(models, tmp_path_factory):
    """`{(name, format, which): ExportReport}`, `which` "adapted" or "base".

    The base artifacts are only counted (their ops against the adapted
    ones'), so they are not run against Keras.
    """
    folder = tmp_path_factory.mktemp("adapted")
    return {
        (name, format, which): klr.export(
            model, folder / f"{name}_{which}{EXTENSIONS[format]}", format,
            verify=which == "adapted",
        )
        for name, format in CASES
        for which, model in zip(("base", "adapted"), models[name])
    }


def test_the_models_hold_adapters(models):
    for name, (base, adapted) in models.items():
        assert klr.adapter_paths(base) == []
        assert len(klr.adapter_paths(adapted)) == ADAPTERS[name][1]


@pytest.mark.parametrize("name,format", CASES)
def test_report_of_adapted_export(reports, name, format):
    report = reports[name, format, "adapted"]
    assert report.verified
    assert report.batch_sizes_checked == (1, 8)
    assert report.tolerance == TOLERANCE
    assert report.max_abs_diff <= TOLERANCE


@pytest.mark.parametrize("name,format", CASES)
def test_artifact_holds_the_delta(models, reports, name, format):
    base, adapted = models[name]
    run = RUNNERS[format](reports[name, format, "adapted"].path)  # loaded once
    for batch_size in (1, 8):
        inputs = runtime_inputs(name, batch_size)
        actual = run(inputs)
        assert max_abs_diff(keras_call(adapted, name, inputs), actual) <= TOLERANCE
        assert max_abs_diff(keras_call(base, name, inputs), actual) > DELTA_FLOOR


@pytest.mark.parametrize("name,format", CASES)
def test_no_name_in_the_artifact_mentions_lora(models, reports, name, format):
    names = _ARTIFACT_NAMES[format](reports[name, format, "adapted"].path)
    # The names were read: adapted layers are named in them (not all of
    # them: tf2onnx renames rewritten einsums).
    leaves = {path.split("/")[-1] for path in adapters(models[name][1])}
    assert any(leaf in n for leaf in leaves for n in names)
    assert [n for n in names if "lora" in n.lower()] == []


@pytest.mark.parametrize("name,format", CASES)
def test_artifact_has_the_ops_of_the_base_model(reports, name, format):
    count = _OP_COUNTS[format]
    adapted = count(reports[name, format, "adapted"].path)
    assert adapted == count(reports[name, format, "base"].path)
    assert sum(adapted.values()) >= ADAPTERS[name][1]  # an op per layer at least


def _saved_model(path):
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as file:
        saved_model.ParseFromString(file.read())
    return saved_model


def _graph_nodes(graph):
    return [*graph.node, *(n for f in graph.library.function for n in f.node_def)]


def _saved_model_names(path):
    saved_model = _saved_model(path)
    names = []
    for meta_graph in saved_model.meta_graphs:
        graph = meta_graph.graph_def
        names += [function.signature.name for function in graph.library.function]
        names += [n for node in _graph_nodes(graph) for n in (node.name, node.op)]
        for saved_object in meta_graph.object_graph_def.nodes:
            names += [child.local_name for child in saved_object.children]
    variables = os.path.join(path, "variables", "variables")
    names += [n for n, _ in tf.train.list_variables(variables)]
    return names


def _tflite_names(path):
    names = [t["name"] for t in _interpreter(path).get_tensor_details()]
    return names + list(_tflite_op_counts(path))


def _interpreter(path):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=path)


def _onnx_names(path):
    import onnx

    graph = onnx.load(path).graph
    names = [n for node in graph.node for n in (node.name, node.op_type)]
    names += [n for node in graph.node for n in (*node.input, *node.output)]
    names += [tensor.name for tensor in graph.initializer]
    return names


_ARTIFACT_NAMES = {
    "saved_model": _saved_model_names,
    "tflite": _tflite_names,
    "onnx": _onnx_names,
}


def _saved_model_op_counts(path):
    return collections.Counter(
        node.op
        for meta_graph in _saved_model(path).meta_graphs
        for node in _graph_nodes(meta_graph.graph_def)
    )


def _tflite_op_counts(path):
    # The public `ops()` of the library's runner gives a set; this counts.
    return collections.Counter(
        op["op_name"] for op in _interpreter(path)._get_ops_details()
    )


def _onnx_op_counts(path):
    import onnx

    return collections.Counter(node.op_type for node in onnx.load(path).graph.node)


_OP_COUNTS = {
    "saved_model": _saved_model_op_counts,
    "tflite": _tflite_op_counts,
    "onnx": _onnx_op_counts,
}
