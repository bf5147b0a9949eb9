"""What an int4 base is fitted to: each layer's input statistics `XᵀX`,
gathered by running the float model on calibration inputs.

`add_adapters(..., base_quantization="int4", calibration=inputs)` rounds
every int4 Dense and EinsumDense kernel by GPTQ against these statistics
(`keras_lowrank.layers.gptq`) instead of to the nearest step.
"""

import math

import keras
import numpy as np

from keras_lowrank._compat import keras as keras_compat

# Calibration rows the model runs on at a time.
BATCH_SIZE = 8


# The layer classes whose int4 kernels calibration fits (an embedding is
# looked up, not multiplied: it stays rounded to nearest).
CALIBRATED_CLASSES = (keras.layers.Dense, keras.layers.EinsumDense)


def input_hessians(model, layers, calibration, batch_size=BATCH_SIZE):
    """`{path: XᵀX}` over the inputs each of `layers` receives when `model`
    runs on `calibration`.

    Args:
        model: keras.Model. Run as it is, in inference mode; left untouched.
        layers: `{path: layer}`, plain Dense or EinsumDense layers of
            `model`.
        calibration: the model's inputs: an array, or a dict of arrays (a
            keras-hub backbone's), examples along the first axis. Positions
            where a `"padding_mask"` is 0 are left out.
        batch_size: int. Examples per forward pass.

    Returns:
        `{path: float32 (rows, rows)}`, rows in the order Keras lays the
        kernel's input axes out for int4. Layers that receive the same
        input tensor (a block's query, key and value) share one array.
    """
    rows = {id(layer): kernel_rows(path, layer) for path, layer in layers.items()}
    paths = {id(layer): path for path, layer in layers.items()}
    count = _examples(calibration)
    leader = {}  # path -> the path whose statistics it shares
    runner = _runner(model, layers)

    def statistics(batch):
        """`{leader path: XᵀX}` of one batch (traced once on TensorFlow)."""
        inputs = {}
        with keras_compat.call_inputs_recorded(
                list(layers.values()), lambda layer, x: inputs.setdefault(id(layer), x)):
            runner(batch, training=False)
        mask = batch.get("padding_mask") if isinstance(batch, dict) else None
        first, grams = {}, {}
        for key, x in inputs.items():
            path = paths[key]
            leader[path] = first.setdefault(id(x), path)
            if leader[path] == path:
                grams[path] = _gram(x, mask, rows[key])
        return grams

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        statistics = tf.function(statistics)
    sums = {}
    for start in range(0, count, batch_size):
        for path, gram in statistics(_rows(calibration, start, start + batch_size)).items():
            sums[path] = sums.get(path, 0) + keras.ops.convert_to_numpy(gram)
    missing = [path for path in layers if path not in leader]
    if missing:
        raise ValueError(
            f"Calibration ran model '{model.name}' on {count} examples, but "
            f"layer '{missing[0]}' was never called (and {len(missing) - 1} "
            "more): its int4 kernel cannot be fitted to inputs it does not "
            "see. Give the inputs `model(inputs)` takes, or leave the layer "
            "out with `exclude=`.")
    return {path: sums[leader[path]] for path in layers}


def _runner(model, layers):
    """A keras-hub task's backbone when it holds every layer (its output
    head's work is not needed), else the model."""
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, keras.Model):
        inside = {id(layer) for layer in keras_compat.flatten_layers(backbone)}
        if all(id(layer) in inside for layer in layers.values()):
            return backbone
    return model


def _gram(x, mask, rows):
    """`XᵀX` of `x` flattened to (positions, rows), zeros where `mask` (batch,
    positions) is off."""
    x = keras.ops.cast(x, "float32")
    if mask is not None and len(x.shape) >= 3:
        weights = keras.ops.cast(mask, "float32")
        for _ in range(len(x.shape) - 2):
            weights = keras.ops.expand_dims(weights, -1)
        x = x * weights
    flat = keras.ops.reshape(x, (-1, rows))
    return keras.ops.matmul(keras.ops.transpose(flat), flat)


def kernel_rows(path, layer):
    """The input rows of `layer`'s kernel as Keras lays it out for int4.

    A Dense kernel is (inputs, outputs). An EinsumDense kernel is flattened
    with its contracted axes first, in the kernel's order: calibration
    takes the equations where those axes also end the input, in the same
    order (every keras-hub projection), and refuses others."""
    if isinstance(layer, keras.layers.EinsumDense):
        inputs, rest = layer.equation.split(",")
        kernel, output = rest.split("->")
        contracted = "".join(c for c in kernel if c in inputs and c not in output)
        if not (kernel.startswith(contracted) and inputs.endswith(contracted)):
            raise ValueError(
                f"Calibration fits int4 EinsumDense kernels whose contracted "
                f"axes lead the kernel and end the input. Received: layer "
                f"'{path}' with equation '{layer.equation}'. Leave it out with "
                "`exclude=`, or quantize without `calibration`.")
        return math.prod(layer.kernel.shape[:len(contracted)])
    return layer.kernel.shape[0]


def check_calibration(calibration, base_quantization):
    """Refuses calibration inputs without an int4 base, or with no rows."""
    if calibration is None:
        return
    if base_quantization != "int4":
        raise ValueError(
            "`calibration` fits the kernels of an int4 base (GPTQ); it needs "
            f"base_quantization='int4'. Received: base_quantization="
            f"{base_quantization!r}. Pass base_quantization='int4', or drop "
            "`calibration`.")
    if _examples(calibration) == 0:
        raise ValueError(
            "`calibration` holds no examples. Received: "
            f"{_describe(calibration)}. Pass a few hundred of the inputs the "
            "model is fine-tuned on (the rows of a batch).")


def _examples(calibration):
    if isinstance(calibration, dict):
        sizes = {len(value) for value in calibration.values()}
        if len(sizes) != 1:
            raise ValueError(
                "`calibration` must hold the same number of examples under "
                f"every key. Received: {_describe(calibration)}")
        return sizes.pop()
    if not hasattr(calibration, "shape"):
        raise TypeError(
            "`calibration` must be the model's inputs: an array, or a dict of "
            "arrays with examples along the first axis. Received: "
            f"{type(calibration).__name__}")
    return len(calibration)


def _rows(calibration, start, stop):
    if isinstance(calibration, dict):
        return {key: value[start:stop] for key, value in calibration.items()}
    return calibration[start:stop]


def _describe(calibration):
    if isinstance(calibration, dict):
        return "{" + ", ".join(f"'{k}': shape {tuple(np.shape(v))}"
                               for k, v in calibration.items()) + "}"
    return f"shape {tuple(np.shape(calibration))}"
