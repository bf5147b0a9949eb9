"""`export_session`: the exports of one model share their expensive steps.

A run writes one trained model in several formats: LiteRT, ONNX, the
MediaPipe text classifier and full-integer LiteRT. On its own, each
`export` merges the adapters again, traces and saves a SavedModel again
and runs Keras again on the rows it checks; in the MiniLM run
(`tests/minilm_run.py`, profiled) that was 4 merges (7.5 s), 3 SavedModels
(9.6 s, two of them of the same graph) and Keras on the 200 eval texts
twice (3.5 s and 4.2 s). Within `export_session()` the exports share:

- the merged model, one `merge_adapters` per model (`shared_merged_model`);
- a SavedModel, by the model, signature and tracing it holds: the LiteRT
  float / dynamic and int8 conversions read one (`shared_saved_model`);
- Keras' outputs, by the model and the exact input arrays: the rows every
  format is checked on, the eval rows that both the text classifier and
  the int8 artifact are judged on (`shared_keras_outputs`).

What is shared is what each export would compute again, so artifacts and
reports are the same as without a session: the same ops, weights, scales
and figures. Only tensor names may differ, as they do between any two
merges: they carry Keras' process-wide layer counters (`softmax_4` in one
merged copy, `softmax_6` in the next). Nothing outlives the session:
its SavedModels are deleted and its references dropped when it ends. A
model is known by its identity within it, its weights are not read again:
models must not change while the session is open. `finetune` opens one
around its export stage; outside a session every export computes its own.

Example:
```python
with export_session():
    export(model, "model.tflite", "tflite", quantize="dynamic")
    export(model, "model_int8.tflite", "tflite", quantize="int8",
           calibration_data=texts)  # the same merge and SavedModel
```
"""

import contextlib
import contextvars
import hashlib
import os
import shutil
import tempfile

import keras
import numpy as np

_CURRENT = contextvars.ContextVar("keras_lowrank_export_session", default=None)


class _Session:
    """What one session shares: values by key, and the folder of its files."""

    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="klr_export_session_")
        self.values = {}
        # Every model a key names, kept alive: no other object takes its id
        # while the session is open.
        self.models = []


@contextlib.contextmanager
def export_session():
    """Within it, exports share merges, SavedModels and Keras' outputs.

    Sessions nest: an inner one shares nothing with the outer one. The
    models exported within it must not change until it ends.

    Yields:
        None.
    """
    session = _Session()
    token = _CURRENT.set(session)
    try:
        yield
    finally:
        _CURRENT.reset(token)
        shutil.rmtree(session.folder, ignore_errors=True)
        session.values.clear()
        session.models.clear()


def in_session() -> bool:
    """Whether an `export_session` is open."""
    return _CURRENT.get() is not None


def shared_merged_model(model, merge):
    """`merge(model)`, once per model within a session."""
    return _shared(("merged", id(model)), lambda: merge(model), model)


def shared_keras_outputs(model, key, flat_inputs, compute):
    """`compute()`, Keras' outputs `{name: ndarray}` of `model` on
    `flat_inputs` (`{name: array}`), once per model, `key` (how the inputs
    are passed: `signature_key`) and input values within a session. The
    arrays are read-only: every export reads the same ones.
    """
    if _CURRENT.get() is None:
        return compute()

    def outputs():
        values = compute()
        for value in values.values():
            value.setflags(write=False)
        return values

    return _shared(("outputs", id(model), key, _content_key(flat_inputs)), outputs,
                   model)


@contextlib.contextmanager
def shared_saved_model(key, model, write):
    """Yields the path of the SavedModel `write(path)` writes.

    Within a session, the first call with `key` writes it into the
    session's folder, and later ones yield that path; outside one it is
    written into a temporary folder, removed at the end of the context.

    Args:
        key: hashable. What the SavedModel holds besides `model` (the
            signature, the serving function's kind, the tracing).
        model: the Keras model it holds.
        write: callable taking the path, a folder that does not exist yet.
    """
    session = _CURRENT.get()
    if session is None:
        with tempfile.TemporaryDirectory(prefix="klr_saved_model_") as folder:
            path = os.path.join(folder, "saved_model")
            write(path)
            yield path
        return

    def written():
        path = os.path.join(session.folder, f"saved_model_{len(session.values)}")
        write(path)
        return path

    yield _shared(("saved_model", id(model), key), written, model)


def signature_key(signature):
    """A hashable key of an input signature: its kind, names, shapes, dtypes."""
    return (type(signature).__name__,) + tuple(
        (spec.name, tuple(spec.shape.as_list()), spec.dtype.name)
        for spec in keras.tree.flatten(signature)
    )


def _shared(key, make, model):
    session = _CURRENT.get()
    if session is None:
        return make()
    if key not in session.values:
        value = make()  # an error leaves nothing behind
        session.values[key] = value
        session.models.append(model)
    return session.values[key]


def _content_key(flat_inputs):
    """The inputs' names, dtypes, shapes and bytes (SHA-256), in name order."""
    key = []
    for name in sorted(flat_inputs):
        array = np.asarray(flat_inputs[name])
        data = repr(array.tolist()).encode() if array.dtype.kind == "O" else array.tobytes()
        key.append((name, array.dtype.str, array.shape, hashlib.sha256(data).hexdigest()))
    return tuple(key)
