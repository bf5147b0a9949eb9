"""The serving signature shared by every export format.

One traced function, `serving_function(model, signature)`, is what each
format writes: named inputs whose batch dimension is `None`, and a flat dict
of named outputs. The SavedModel signature, the LiteRT signature and the ONNX
graph therefore all expose the same input and output names, and verification
can compare them with Keras by name.
"""

import keras
import numpy as np

from keras_lowrank.exporters.session import shared_keras_outputs
from keras_lowrank.exporters.session import signature_key
from keras_lowrank.utils.optional import tensorflow as tf


def input_signature(model, sample_inputs=None):
    """The input structure of `model` as `tf.TensorSpec`s, batch dim `None`.

    Mirrors the structure the model is called with: one spec, a list of specs
    or a dict of specs. Each spec is named after its input (the dict key for
    dict inputs, the Keras tensor's name otherwise); other dimensions keep the
    model's own shape, so a `None` sequence length stays dynamic.

    Args:
        model: a built Keras model.
        sample_inputs: optional. Used only when the model has no symbolic
            inputs (a subclassed model): the specs then take the dtypes and
            the non-batch shapes of these arrays.

    Returns:
        A `tf.TensorSpec`, a list of them or a dict of them.

    Raises:
        ValueError: if the model has no symbolic inputs and no sample inputs
            were given.
    """
    try:
        structure = model.input
    except (AttributeError, ValueError):
        structure = None
    if structure is not None:
        return _specs_from_keras_tensors(structure)
    if sample_inputs is None:
        raise ValueError(
            "Cannot infer the input signature: the model has no symbolic "
            "inputs (a subclassed or unbuilt model). Pass `sample_inputs` "
            f"(an array, list or dict of arrays). Received: model={model!r}"
        )
    return _specs_from_arrays(sample_inputs)


def input_names(signature):
    """The input names of `signature`, in flattened order."""
    return [spec.name for spec in keras.tree.flatten(signature)]


def flat_specs(signature):
    """`{name: tf.TensorSpec}` for every input of `signature`."""
    return {spec.name: spec for spec in keras.tree.flatten(signature)}


def pack_inputs(signature, flat_inputs):
    """Rebuilds the model's input structure from `{name: array}`."""
    if isinstance(signature, dict):
        return {key: flat_inputs[spec.name] for key, spec in signature.items()}
    if isinstance(signature, (list, tuple)):
        return [flat_inputs[spec.name] for spec in signature]
    return flat_inputs[signature.name]


def named_outputs(outputs):
    """Flattens model outputs into `{name: tensor}`.

    Dict outputs keep their keys; a single tensor is `output_0`; a list or a
    tuple gives `output_0`, `output_1`, ... in order.
    """
    if isinstance(outputs, dict):
        return {str(key): value for key, value in outputs.items()}
    flat = keras.tree.flatten(outputs)
    return {f"output_{i}": value for i, value in enumerate(flat)}


def serving_function(model, signature):
    """A `tf.function` with `signature` that returns `named_outputs(...)`."""

    @tf.function(input_signature=[signature], autograph=False)
    def serve(inputs):
        # TensorFlow rejects a root name scope that starts with "_" (Keras
        # names a subclassed model `_Net` "__net"), and Keras has pushed the
        # scope onto its own stack by then, so every later layer path would
        # carry it. A valid root scope makes the model's scope a nested one.
        with tf.name_scope("serving"):
            return named_outputs(model(inputs, training=False))

    return serve


def keras_outputs(model, signature, flat_inputs):
    """Runs the Keras model on `{name: array}`; returns `{name: ndarray}`.

    Within an `export_session`, once per model and input values: the
    exports of a run check their artifacts on the same rows.
    """
    def run():
        outputs = model(pack_inputs(signature, flat_inputs), training=False)
        return {
            name: np.asarray(keras.ops.convert_to_numpy(value))
            for name, value in named_outputs(outputs).items()
        }

    return shared_keras_outputs(model, signature_key(signature), flat_inputs, run)


def _specs_from_keras_tensors(structure):
    if isinstance(structure, dict):
        return {
            key: _spec(tensor.shape, tensor.dtype, str(key))
            for key, tensor in structure.items()
        }
    if isinstance(structure, (list, tuple)):
        return [_spec(t.shape, t.dtype, t.name) for t in structure]
    return _spec(structure.shape, structure.dtype, structure.name)


def _specs_from_arrays(sample_inputs):
    if isinstance(sample_inputs, dict):
        return {
            key: _spec(np.shape(value), np.asarray(value).dtype, str(key))
            for key, value in sample_inputs.items()
        }
    if isinstance(sample_inputs, (list, tuple)):
        return [
            _spec(np.shape(value), np.asarray(value).dtype, f"input_{i}")
            for i, value in enumerate(sample_inputs)
        ]
    array = np.asarray(sample_inputs)
    return _spec(array.shape, array.dtype, "input_0")


def _spec(shape, dtype, name):
    shape = tuple(shape)
    if not shape:
        raise ValueError(
            "Every model input needs a batch dimension. "
            f"Received: input {name!r} with shape=()"
        )
    return tf.TensorSpec((None,) + shape[1:], tf.as_dtype(dtype), name=name)
