"""TensorFlow SavedModel: writing it, and running it with `tf.saved_model`.

The SavedModel is also the intermediate step of the TFLite export:
`TFLiteConverter.from_keras_model` fails on keras-hub models, while
`from_saved_model` on this signature converts them.
"""

import shutil

import keras
import numpy as np

from keras_lowrank.exporters.export_format import ExportFormat
from keras_lowrank.exporters.signature import serving_function
from keras_lowrank.utils.atomic import has_files
from keras_lowrank.utils.optional import tensorflow as tf

SIGNATURE_KEY = "serving_default"


def write_saved_model(model, signature, path, serve=None, *, endpoint=True):
    """Writes `model` as a SavedModel folder at `path`.

    Its `serving_default` signature takes the named inputs of `signature`
    (batch dimension `None`) and returns the outputs as a dict.

    The folder tracks only the backing `tf.Variable`s of the model: tracking
    the Keras model itself, as `keras.export.ExportArchive` does, stores every
    weight twice (183 MB instead of 91 MB for all-MiniLM-L6-v2). A model whose
    graph captures other resources (lookup tables of preprocessing layers)
    falls back to `ExportArchive`.

    Args:
        model: a Keras model.
        signature: the structure from `input_signature(model)`.
        path: a folder that does not exist yet.
        serve: optional. The `tf.function` to save as the signature, with
            `signature` as its input signature. Default:
            `serving_function(model, signature)`.
        endpoint: whether the folder also holds `serve` as a function of
            the loaded object (`tf.saved_model.load(path).serve(...)`), as
            the `"saved_model"` format does. The LiteRT converter reads only
            the signature: its intermediate SavedModels leave it out, which
            takes 1.5 instead of 2.5 CPU s per save on all-MiniLM-L6-v2, for
            the same flatbuffer byte for byte.
    """
    serve = serve or serving_function(model, signature)
    module = tf.Module()
    module.model_variables = [_backing_variable(v) for v in model.variables]
    if endpoint:
        module.serve = serve
    try:
        tf.saved_model.save(
            module,
            path,
            signatures={SIGNATURE_KEY: serve.get_concrete_function()},
        )
    except (AssertionError, ValueError):  # an untracked resource
        shutil.rmtree(path, ignore_errors=True)
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", serve)
        archive.write_out(path, verbose=False)


class SavedModelRunner:
    """Runs a SavedModel's serving signature on `{name: array}` inputs.

    Args:
        path: the SavedModel folder.
    """

    def __init__(self, path):
        self.runtime = f"tensorflow {tf.__version__} (tf.saved_model.load)"
        self._loaded = tf.saved_model.load(path)
        if SIGNATURE_KEY not in self._loaded.signatures:
            raise ValueError(
                f"The SavedModel at {path!r} has no {SIGNATURE_KEY!r} "
                f"signature. Received: {list(self._loaded.signatures)}"
            )
        self._function = self._loaded.signatures[SIGNATURE_KEY]
        _, specs = self._function.structured_input_signature
        self.input_names = tuple(sorted(specs))
        self.output_names = tuple(sorted(self._function.structured_outputs))

    def __call__(self, inputs):
        tensors = {name: tf.constant(value) for name, value in inputs.items()}
        outputs = self._function(**tensors)
        return {name: np.asarray(value) for name, value in outputs.items()}

    @property
    def input_shapes(self):
        """`{name: shape}`, -1 for dynamic dimensions."""
        _, specs = self._function.structured_input_signature
        return {
            name: [-1 if d is None else int(d) for d in specs[name].shape]
            for name in sorted(specs)
        }

    def ops(self):
        """Sorted op types of the signature graph and its functions."""
        graph_def = self._function.graph.as_graph_def()
        types = {node.op for node in graph_def.node}
        for function in graph_def.library.function:
            types.update(node.op for node in function.node_def)
        return tuple(sorted(types))


def _backing_variable(variable):
    # A Keras variable on the TensorFlow backend wraps a `tf.Variable`.
    value = getattr(variable, "value", variable)
    return value if isinstance(value, tf.Variable) else variable


FORMAT = ExportFormat(
    name="saved_model",
    title="SavedModel",
    directory=True,
    suffix="",
    write=write_saved_model,
    runner=SavedModelRunner,
    # An earlier SavedModel export, which a new one may replace.
    replaceable=has_files("saved_model.pb"),
)
