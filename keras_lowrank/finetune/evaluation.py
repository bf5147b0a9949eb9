"""Accuracy of a classifier on token ids: in Keras, LiteRT or ONNX Runtime.

Each function runs a whole split in batches and compares the argmax of the
logits with the labels. The exported artifacts run in their own runtimes
(the LiteRT `Interpreter`, an ONNX Runtime session), so the accuracy they
report is the accuracy a deployment gets.
"""

import time

import numpy as np

from keras_lowrank.finetune import batching


def keras_accuracy(model, inputs, labels, batch_size):
    """Accuracy of a Keras classifier (preprocessor detached) on token ids."""
    return _accuracy(
        lambda batch: np.asarray(model.predict_on_batch(batch)),
        inputs, labels, batch_size,
    )


def tflite_accuracy(path, inputs, labels, batch_size, num_threads=None):
    """Accuracy of a `.tflite` classifier run by the LiteRT interpreter."""
    return _accuracy(_TFLiteClassifier(path, num_threads), inputs, labels, batch_size)


def onnx_accuracy(path, inputs, labels, batch_size):
    """Accuracy of an `.onnx` classifier run by ONNX Runtime (CPU)."""
    return _accuracy(_ONNXClassifier(path), inputs, labels, batch_size)


def artifact_accuracy(format, path, inputs, labels, batch_size):
    """`tflite_accuracy` or `onnx_accuracy`, by `format`."""
    return _accuracy(artifact_predictor(format, path), inputs, labels, batch_size)


def artifact_predictor(format, path):
    """A callable `{name: array} -> logits` running `path` in its runtime.

    Args:
        format: `"tflite"` (the LiteRT interpreter) or `"onnx"` (ONNX
            Runtime, CPU).
        path: the artifact.
    """
    if format == "tflite":
        return _TFLiteClassifier(path)
    if format == "onnx":
        return _ONNXClassifier(path)
    raise ValueError(
        f"Unrecognized format={format!r}. Supported formats are: ['tflite', 'onnx']"
    )


def _accuracy(predict, inputs, labels, batch_size):
    """`{"accuracy", "seconds", "examples"}` of `predict` over a split."""
    if not len(labels):
        return {"accuracy": None, "seconds": 0.0, "examples": 0}
    start = time.perf_counter()
    correct = 0
    for batch, batch_labels in batching.length_sorted_batches(inputs, labels, batch_size):
        logits = predict(batch)
        correct += int(np.sum(np.argmax(logits, axis=-1) == batch_labels))
    return {
        "accuracy": correct / len(labels),
        "seconds": time.perf_counter() - start,
        "examples": int(len(labels)),
    }


class _TFLiteClassifier:
    """Runs the serving signature of a `.tflite` file on `{name: array}`.

    The input tensors are resized to each batch's shape (the batch and
    sequence dimensions are dynamic in the artifact) and re-allocated only
    when the shape changes.
    """

    def __init__(self, path, num_threads=None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                "Running TFLite artifacts needs ai-edge-litert: "
                "`pip install ai-edge-litert==2.3.0`."
            ) from None
        self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        signatures = self._interpreter.get_signature_list()
        runner = self._interpreter.get_signature_runner(next(iter(signatures)))
        self._inputs = runner.get_input_details()
        outputs = runner.get_output_details()
        self._output = outputs[sorted(outputs)[0]]["index"]
        self._shape = None

    def __call__(self, batch):
        interpreter = self._interpreter
        shape = next(iter(batch.values())).shape
        if shape != self._shape:
            for detail in self._inputs.values():
                interpreter.resize_tensor_input(detail["index"], shape, strict=True)
            interpreter.allocate_tensors()
            self._shape = shape
        for name, detail in self._inputs.items():
            interpreter.set_tensor(detail["index"], batch[name].astype(detail["dtype"]))
        interpreter.invoke()
        return interpreter.get_tensor(self._output)


class _ONNXClassifier:
    """Runs an `.onnx` file with ONNX Runtime's CPU provider."""

    _DTYPES = {"tensor(int32)": "int32", "tensor(int64)": "int64",
               "tensor(bool)": "bool", "tensor(float)": "float32"}

    def __init__(self, path):
        try:
            import onnxruntime
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                "Running ONNX artifacts needs onnxruntime: "
                "`pip install onnxruntime==1.32.0`."
            ) from None
        self._session = onnxruntime.InferenceSession(
            str(path), providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name: self._DTYPES[i.type] for i in self._session.get_inputs()}
        self._output = sorted(o.name for o in self._session.get_outputs())[0]

    def __call__(self, batch):
        feed = {name: batch[name].astype(dtype) for name, dtype in self._inputs.items()}
        return self._session.run([self._output], feed)[0]
