"""Models, inputs and raw runtime calls shared by the exporter tests.

The runtime calls here use each runtime's own API directly (the signature
runner for LiteRT, `session.run` for ONNX Runtime), independently of
`keras_lowrank.exporters`, so the tests check the artifacts, not only the
library's own runners.
"""

import keras
import keras_hub
import numpy as np
import tensorflow as tf

VOCABULARY_SIZE = 120


def dense_model():
    """A functional model: one float input, two named Dense outputs."""
    inputs = keras.Input((6,), name="features")
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    outputs = {
        "scores": keras.layers.Dense(3, name="scores")(hidden),
        "value": keras.layers.Dense(1, name="value")(hidden),
    }
    return keras.Model(inputs, outputs, name="dense_model")


def bert_classifier():
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCABULARY_SIZE,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=32,
    )
    return keras_hub.models.BertTextClassifier(
        backbone, num_classes=2, preprocessor=None
    )


def gpt2_backbone():
    return keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCABULARY_SIZE,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=32,
    )


BUILDERS = {"dense": dense_model, "bert": bert_classifier, "gpt2": gpt2_backbone}


def runtime_inputs(name, batch_size, length=20, seed=99):
    """Inputs unlike the exporter's own: another seed and sequence length."""
    rng = np.random.default_rng(seed)
    if name == "dense":
        return {"features": rng.standard_normal((batch_size, 6)).astype("float32")}
    lengths = rng.integers(length // 2, length + 1, size=batch_size)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype("int32")
    token_ids = rng.integers(1, VOCABULARY_SIZE, size=(batch_size, length))
    inputs = {"token_ids": (token_ids * mask).astype("int32"), "padding_mask": mask}
    if name == "bert":
        inputs["segment_ids"] = np.zeros_like(mask)
    return inputs


def keras_call(model, name, inputs):
    """Calls the model with its own input structure; `{name: ndarray}`."""
    if name == "dense":
        outputs = model(inputs["features"], training=False)
    else:
        outputs = model(inputs, training=False)
    if isinstance(outputs, dict):
        return {k: np.asarray(v) for k, v in outputs.items()}
    return {"output_0": np.asarray(outputs)}


def saved_model_runner(path):
    function = tf.saved_model.load(path).signatures["serving_default"]

    def run(inputs):
        outputs = function(**{k: tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in outputs.items()}

    return run


def tflite_runner(path):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    return lambda inputs: runner(**inputs)


def onnx_runner(path):
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return lambda inputs: dict(zip(names, session.run(names, inputs)))


# `RUNNERS[format](path)` loads the artifact once (a SavedModel load takes
# 1-2 s) and returns `inputs -> outputs`, to run on several batches.
RUNNERS = {"saved_model": saved_model_runner, "tflite": tflite_runner,
           "onnx": onnx_runner}


def run_saved_model(path, inputs):
    return saved_model_runner(path)(inputs)


def run_tflite(path, inputs):
    return tflite_runner(path)(inputs)


def run_onnx(path, inputs):
    return onnx_runner(path)(inputs)


RUNTIMES = {"saved_model": run_saved_model, "tflite": run_tflite, "onnx": run_onnx}


def max_abs_diff(expected, actual):
    assert sorted(expected) == sorted(actual)
    return max(
        float(np.max(np.abs(np.asarray(actual[k]) - expected[k]))) for k in expected
    )
