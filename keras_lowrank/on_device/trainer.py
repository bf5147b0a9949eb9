"""`OnDeviceTrainer`: a trainable LiteRT artifact, run without TensorFlow.

Needs `numpy` and `ai-edge-litert` only: no TensorFlow, no Keras, no
keras_lowrank import, since `export/train_on_device.py` loads this file by
path (and it loads `artifact_files.py` beside it the same way). Every call
is checked first by `check_batch` / `check_factors`, pure functions of the
artifact's metadata: a bad input raises one line and nothing runs.

Example:
```python
trainer = OnDeviceTrainer("personal.tflite")
loss = trainer.train(inputs, labels)        # one optimizer step
logits = trainer.infer(inputs)
factors = trainer.save()                    # {adapter-file key: array}
trainer.restore(factors)
```
"""

import os
import sys

import numpy as np

if __package__:
    from keras_lowrank.on_device import artifact_files
else:  # loaded by path, without the package (and Keras): standalone.py
    artifact_files = sys.modules["_klr_standalone"].load("artifact_files")

SIGNATURES = ("infer", "train", "save", "restore")
_INT32 = np.iinfo(np.int32)


class OnDeviceTrainer:
    """The `infer`, `train`, `save` and `restore` signatures of an artifact.

    Args:
        path: the `.tflite` file of `klr.export(..., on_device_training=...)`.
        num_threads: optional. Interpreter threads.

    Attributes:
        metadata: dict. The artifact's `on_device_training.json`.

    Raises:
        ValueError: the file is not a trainable artifact.
        ImportError: `ai-edge-litert` is not installed (with the pip command).
    """

    def __init__(self, path, num_threads=None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:
            raise ImportError(
                "ai-edge-litert is required to run .tflite artifacts: "
                "pip install 'ai-edge-litert==2.3.0'") from error
        self.metadata = artifact_files.read_metadata(path)
        interpreter = Interpreter(model_path=os.fspath(path), num_threads=num_threads)
        found = interpreter.get_signature_list()
        missing = [name for name in SIGNATURES if name not in found]
        if missing:
            raise ValueError(
                f"'{path}' lacks the signature(s) {missing} of a trainable "
                f"artifact (it has {sorted(found)}). Export it again with "
                "on_device_training=klr.OnDeviceTraining(...).")
        self._runners = {name: interpreter.get_signature_runner(name) for name in SIGNATURES}

    def infer(self, inputs) -> np.ndarray:
        """The logits of one batch: `[B, C]` (classifier) or `[B, T, V]`."""
        return np.asarray(self._runners["infer"](**check_inputs(self.metadata, inputs))["logits"])

    def train(self, inputs, labels, loss_mask=None) -> float:
        """One optimizer step on one batch; returns the batch's loss."""
        inputs, extra = check_batch(self.metadata, inputs, labels, loss_mask)
        return float(self._runners["train"](**inputs, **extra)["loss"])

    def save(self) -> dict:
        """The trained factors, `{adapter-file key: array}`."""
        outputs = self._runners["save"]()
        return {f["key"]: np.array(outputs[f["name"]]) for f in self.metadata["factors"]}

    def restore(self, factors):
        """Sets the trained factors from a dict as `save` returns."""
        self._runners["restore"](**check_factors(self.metadata, factors))


# === Checks ===


def check_inputs(metadata, inputs) -> dict:
    """The model inputs, checked and cast to the artifact's dtypes.

    Raises:
        ValueError: an input missing, unknown, of another shape or of a
            dtype that does not cast losslessly.
    """
    if not isinstance(inputs, dict):
        raise ValueError(
            f"inputs must be a dict of arrays keyed by {sorted(metadata['inputs'])}. "
            f"Received: inputs of type {type(inputs).__name__}.")
    wanted = metadata["inputs"]
    unknown = sorted(set(inputs) - set(wanted))
    missing = sorted(set(wanted) - set(inputs))
    if unknown or missing:
        raise ValueError(
            f"inputs must have exactly the keys {sorted(wanted)}. Received: "
            f"{sorted(inputs)} (missing {missing}, unknown {unknown}). Nothing was run.")
    return {name: _checked(inputs[name], f"input '{name}'", spec["shape"], spec["dtype"], metadata)
            for name, spec in wanted.items()}


def check_batch(metadata, inputs, labels, loss_mask=None):
    """The arguments of one `train` call, checked and cast.

    Returns:
        `(inputs, {"labels": ..., "loss_mask": ...})`, the second without
        `loss_mask` for a classifier.

    Raises:
        ValueError: see `check_inputs`; labels not integers or out of
            range; `loss_mask` missing for a causal LM or given for a
            classifier.
    """
    inputs = check_inputs(metadata, inputs)
    batch, length = metadata["batch_size"], metadata["sequence_length"]
    if metadata["task"] == "classifier":
        label_shape, limit, limit_name = [batch], metadata["num_classes"], "num_classes"
        if loss_mask is not None:
            raise ValueError(
                "loss_mask is for causal-LM artifacts; this one is a classifier, "
                "every row counts. Received: a loss_mask. Pass loss_mask=None.")
    else:
        label_shape, limit, limit_name = [batch, length], metadata["vocabulary_size"], "vocabulary_size"
        if loss_mask is None:
            raise ValueError(
                f"A causal-LM artifact's train takes loss_mask, float32 {[batch, length]}: "
                "1.0 where labels[t] is a completion token. Received: loss_mask=None.")
    extra = {"labels": _checked(labels, "labels", label_shape, "int32", metadata)}
    low, high = (int(extra["labels"].min()), int(extra["labels"].max())) if extra["labels"].size else (0, 0)
    if low < 0 or high >= limit:
        raise ValueError(
            f"labels must lie in [0, {limit}) ({limit_name}={limit}). Received: "
            f"labels from {low} to {high}. Map them to class ids. Nothing was run.")
    if loss_mask is not None:
        extra["loss_mask"] = _checked(loss_mask, "loss_mask", [batch, length], "float32", metadata)
    return inputs, extra


def check_factors(metadata, factors) -> dict:
    """`{signature name: float32 array}` of `{adapter-file key: array}`.

    Raises:
        ValueError: a key missing or unknown, a shape that differs (naming
            the key and both shapes), or a NaN or Inf (naming the key).
    """
    keys = {f["key"]: f for f in metadata["factors"]}
    if not isinstance(factors, dict) or set(factors) != set(keys):
        given = sorted(factors) if isinstance(factors, dict) else type(factors).__name__
        missing = sorted(set(keys) - set(factors)) if isinstance(factors, dict) else sorted(keys)
        unknown = sorted(set(factors) - set(keys)) if isinstance(factors, dict) else []
        raise ValueError(
            f"factors must be a dict with exactly the artifact's keys {sorted(keys)} "
            f"(as save() returns). Received: {given} (missing {missing}, "
            f"unknown {unknown}). Nothing was changed.")
    checked = {}
    for key, factor in keys.items():
        value = np.asarray(factors[key])
        if list(value.shape) != list(factor["shape"]):
            raise ValueError(
                f"Shape mismatch for factor '{key}': received {tuple(value.shape)}, "
                f"the artifact needs {tuple(factor['shape'])}. Nothing was changed.")
        if value.dtype.kind not in "fiu":
            raise ValueError(
                f"Factor '{key}' must hold numbers. Received: dtype {value.dtype}. "
                "Nothing was changed.")
        bad = int((~np.isfinite(value)).sum())
        if bad:
            raise ValueError(
                f"Factor '{key}' holds {bad} NaN or Inf value(s) of {value.size}; "
                "non-finite factors make every output NaN. Nothing was changed.")
        checked[factor["name"]] = value.astype(np.float32)
    return checked


def _checked(value, what, shape, dtype, metadata):
    """`value` as a `dtype` array of `shape`, refusing a lossy cast."""
    array = np.asarray(value)
    if list(array.shape) != list(shape):
        if array.ndim >= 1 and array.shape[0] != shape[0]:
            raise ValueError(
                f"{what} has {array.shape[0]} rows; this artifact takes exactly "
                f"batch_size={metadata['batch_size']} rows per call (shape {shape}). "
                "Pad a short batch to that size (text_batches.batches does: "
                "classifier batches are filled from the epoch's first rows, "
                "causal-LM batches padded with loss_mask 0 rows). Nothing was run.")
        raise ValueError(
            f"{what} must have shape {shape}. Received: shape {list(array.shape)}. "
            "Nothing was run.")
    kind = array.dtype.kind
    integral = kind in "iub" and (array.size == 0 or kind == "b" or (
        array.min() >= (0 if dtype == "bool" else _INT32.min)
        and array.max() <= (1 if dtype == "bool" else _INT32.max)))
    if dtype == "float32" and kind in "fiub":
        return array.astype(np.float32)
    if dtype in ("int32", "bool") and integral:
        return array.astype(dtype)
    allowed = {"float32": "numbers", "bool": "booleans or 0/1 integers",
               "int32": "integers within int32"}[dtype]
    raise ValueError(
        f"{what} must hold {allowed} (the artifact's dtype is {dtype}). Received: "
        f"dtype {array.dtype}. Convert it without rounding first. Nothing was run.")
