"""`export_trainable`: a LiteRT artifact that trains its adapters on the phone.

`klr.export(model, "personal.tflite", "tflite",
on_device_training=OnDeviceTraining(...))` comes here. The artifact holds the
model with its base constant and its LoRA factors (and any kept head) as
variables, with the signatures of `trainable_module`, only LiteRT's builtin
ops, and the files of `artifact_files` after the flatbuffer. Before it is
moved to `path` it runs in `ai_edge_litert`: `infer` against Keras, and one
`train` step against the same step in TensorFlow.
"""

import os
import tempfile
import time

import keras
import numpy as np

from keras_lowrank.adapters.adapted_model import adapters
from keras_lowrank.adapters.files import file_metadata
from keras_lowrank.adapters.files import file_weights
from keras_lowrank.exporters.sample_inputs import make_sample_inputs
from keras_lowrank.exporters.sample_inputs import to_flat_inputs
from keras_lowrank.exporters.signature import input_signature
from keras_lowrank.exporters.text_inputs import is_texts
from keras_lowrank.exporters.text_inputs import tokenize
from keras_lowrank.exporters.tflite import UnsupportedOpsError
from keras_lowrank.exporters.tflite import convert_saved_model
from keras_lowrank.on_device import artifact_files
from keras_lowrank.on_device.op_check import check_builtin_ops
from keras_lowrank.on_device.op_check import refusal
from keras_lowrank.on_device.report import TrainableReport
from keras_lowrank.on_device.tokenizer_files import tokenizer_files
from keras_lowrank.on_device.trainable_module import CAUSAL_LM
from keras_lowrank.on_device.trainable_module import CLASSIFIER
from keras_lowrank.on_device.trainable_module import TrainableModule
from keras_lowrank.on_device.verification import verify_artifact
from keras_lowrank.utils.atomic import atomic_path
from keras_lowrank.utils.atomic import check_target
from keras_lowrank.utils.optional import tensorflow as tf

# Options of `klr.export` that a trainable artifact refuses, and why.
_REFUSED = {
    "quantize": "the factors train in float32 on a float base; quantize "
                "the merged model after training instead",
    "metadata": "MediaPipe's TextClassifier runs inference only",
    "allow_flex": "the artifact keeps to LiteRT's builtins, which every phone has",
    "runtime_adapters": "a trainable artifact holds its adapters as variables already",
    "calibration_data": "it is not quantized",
    "representative_data": "it is not quantized",
    "eval_data": "verification compares logits and one train step",
}


def export_trainable(model, path, format, options):
    """Writes and checks the trainable artifact; returns a `TrainableReport`.

    Args:
        model: a keras.Model with LoRA adapters (TensorFlow backend): a
            classifier (logits `[batch, classes]`) or a keras-hub causal LM.
        path: the `.tflite` file to write.
        format: must be `"tflite"`.
        options: an `ExportOptions` whose `on_device_training` is set.

    Raises:
        ValueError: an option a trainable artifact cannot take, a model
            without adapters, or one it cannot train; nothing is written.
        UnsupportedOpsError: the training graph needs an op outside the
            builtins, naming it; nothing is written.
        ExportVerificationError: LiteRT's outputs or step differ from
            TensorFlow's; nothing is written.
    """
    training = options.on_device_training
    _check_arguments(model, path, format, options)
    task = _task(model)
    if task == CLASSIFIER and options.tokenizer is not None:
        raise ValueError(
            "`tokenizer` (a tokenizer.json) is for a causal LM; a classifier's "
            "artifact carries its preprocessor's vocabulary. Received: "
            f"tokenizer={options.tokenizer!r} for a {type(model).__name__}")
    weights = _trained_weights(model)
    specs, sample = _inputs(model, training, options.sample_inputs)
    # Before the conversion (minutes for a 135M LM): the tokenizer files
    # and the place to write.
    tokenizer = tokenizer_files(model, task, options.tokenizer)
    check_target(path)
    start = time.perf_counter()
    module = TrainableModule(model, weights, specs, task, training)
    try:
        flatbuffer = _convert(module)
    except UnsupportedOpsError as error:
        raise refusal(error, model) from None
    ops = check_builtin_ops(flatbuffer)
    metadata, files = _metadata(model, task, module, specs, training, options, tokenizer)
    artifact = artifact_files.append_files(flatbuffer, metadata, files)
    seconds = time.perf_counter() - start
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as file:
            file.write(artifact)
        checks = verify_artifact(
            tmp, model, module, sample, task, atol=options.atol) if options.verify else None
    return TrainableReport(
        path=os.fspath(path), size_bytes=os.path.getsize(path), task=task,
        training=training, trained_parameters=int(sum(np.prod(v.shape) for v in weights.values())),
        factors=len(weights), ops=ops, checks=checks, export_seconds=seconds,
        tokenizer=(metadata["tokenizer"] or {}).get("kind"))


def _check_arguments(model, path, format, options):
    if format != "tflite":
        raise ValueError(
            f"on_device_training writes a LiteRT artifact: format='tflite'. "
            f"Received: format={format!r}")
    for name, why in _REFUSED.items():
        if getattr(options, name) not in (None, False):
            raise ValueError(
                f"on_device_training cannot be combined with {name}="
                f"{getattr(options, name)!r}: {why}.")
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "on_device_training converts through TensorFlow: set "
            f"KERAS_BACKEND=tensorflow. Received: backend {keras.backend.backend()!r}")
    if not adapters(model):
        raise ValueError(
            f"Model '{model.name}' holds no LoRA adapter: on_device_training "
            "trains adapters only. Add them with klr.add_adapters first.")
    if not str(os.fspath(path)).endswith(".tflite"):
        raise ValueError(f"`path` must end in '.tflite'. Received: {os.fspath(path)!r}")


def _task(model):
    import keras_hub

    if isinstance(model, keras_hub.models.CausalLM):
        return CAUSAL_LM
    if len(model.outputs or ()) == 1 and len(model.outputs[0].shape) == 2:
        return CLASSIFIER
    raise ValueError(
        "on_device_training trains a classifier (one output of logits "
        "[batch, classes]) or a keras-hub CausalLM. Received: "
        f"{type(model).__name__} with outputs {[tuple(o.shape) for o in model.outputs or ()]}")


def _trained_weights(model):
    """`{adapter-file key: variable}` of every trainable weight of `model`."""
    weights = {k: w for k, w in file_weights(model).items() if w.trainable}
    held = {id(w) for w in weights.values()}
    outside = [v.path for v in model.trainable_variables if id(v) not in held]
    if outside:
        raise ValueError(
            f"on_device_training trains the adapters and the layers kept "
            f"trainable; these trainable weights belong to neither: {outside[:5]}. "
            "Freeze them (layer.trainable = False) or keep their layer "
            "trainable with keep_trainable.")
    return weights


def _inputs(model, training, sample_inputs):
    """`({name: fixed TensorSpec}, {name: array} of batch_size rows)`."""
    signature = input_signature(model)
    if not isinstance(signature, dict):
        raise ValueError(
            "on_device_training needs a model with named inputs (a dict, "
            f"as keras-hub models take). Received: {signature!r:.120}")
    batch = training.batch_size
    length = training.sequence_length
    if length is None and any(None in tuple(s.shape[1:]) for s in signature.values()):
        length = _model_length(model, signature)
    specs = {
        name: tf.TensorSpec((batch,) + _fixed(spec.shape[1:], length), spec.dtype, name=name)
        for name, spec in signature.items()}
    if sample_inputs is None:
        fixed = {name: tf.TensorSpec((None,) + tuple(s.shape[1:]), s.dtype, name=name)
                 for name, s in specs.items()}
        return specs, make_sample_inputs(model, fixed, batch)
    if is_texts(sample_inputs):
        sample_inputs = tokenize(model, list(sample_inputs))
    flat = to_flat_inputs(signature, sample_inputs)
    rows = np.resize(np.arange(len(next(iter(flat.values())))), batch)
    return specs, {name: _cut(np.asarray(value)[rows], specs[name].shape)
                   for name, value in flat.items()}


def _cut(rows, shape):
    """`rows` of a sample input cut to the artifact's sequence length."""
    return rows[:, :shape[1]] if rows.ndim > 1 else rows


def _fixed(shape, length):
    """`shape` (without its batch) with `length` for a dynamic sequence."""
    shape = tuple(shape)
    if shape and shape[0] is None:
        shape = (length,) + shape[1:]
    if None in shape:
        raise ValueError(
            "on_device_training needs static input shapes besides the batch and "
            f"the sequence length. Received: an input of shape (batch,) + {shape}")
    return shape


def _model_length(model, signature):
    preprocessor = getattr(model, "preprocessor", None)
    length = getattr(preprocessor, "sequence_length", None)
    if length:
        return int(length)
    lengths = {spec.shape[1] for spec in signature.values() if len(spec.shape) > 1}
    if len(lengths) == 1 and None not in lengths:
        return int(lengths.pop())
    raise ValueError(
        "on_device_training needs a fixed sequence length: the model's inputs "
        "have none and it has no preprocessor with `sequence_length`. Pass "
        "OnDeviceTraining(sequence_length=...).")


def _convert(module):
    with tempfile.TemporaryDirectory(prefix="klr_trainable_") as folder:
        tf.saved_model.save(
            module, folder, signatures=module.signatures(),
            options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
        return convert_saved_model(
            folder, signature_keys=tuple(module.signatures()), resource_variables=True)


def _metadata(model, task, module, specs, training, options, tokenizer):
    batch, length = next(iter(specs.values())).shape[:2]
    metadata = {
        "task": task,
        "batch_size": int(batch),
        "sequence_length": int(length),
        "inputs": {name: {"shape": list(spec.shape), "dtype": spec.dtype.name}
                   for name, spec in specs.items()},
        "training": training.to_dict(),
        # "name": the tensor's name in `save` / `restore`, the key itself.
        "factors": [{"key": key, "name": key, "shape": list(v.shape)}
                    for key, v in zip(module.keys, module.trained)],
        "adapter_metadata": file_metadata(model),
    }
    output = int(model.outputs[0].shape[-1]) if model.outputs else None
    if task == CLASSIFIER:
        metadata["num_classes"] = output
        labels = options.labels or getattr(model, "label_names", None)
        metadata["labels"] = list(labels) if labels else None
    else:
        metadata["vocabulary_size"] = int(model.backbone.vocabulary_size)
    info, files = tokenizer
    metadata["tokenizer"] = info
    return metadata, files
