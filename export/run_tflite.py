"""Run a `.tflite` artifact with LiteRT only: no TensorFlow, no Keras.

Needs `numpy` and `ai-edge-litert` (`pip install ai-edge-litert==2.3.0`),
the same runtime that ships inside Android and iOS apps.

Usage:
    python export/run_tflite.py model.tflite --inputs inputs.npz
    python export/run_tflite.py model.tflite --inputs inputs.json \
        --repeats 50 --threads 2 --save-outputs outputs.npz

`--inputs` is a `.npz` file or a JSON object whose keys are the model's
input names (`token_ids`, `padding_mask`, `segment_ids` for a keras-hub BERT
classifier) and whose values are arrays with a batch dimension. The batch
size and any dynamic dimension can differ from the export: the inputs are
resized before the tensors are allocated.
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np

SIGNATURE_KEY = "serving_default"


def load_inputs(path):
    """`{name: ndarray}` from a `.npz` or a `.json` file."""
    if path.endswith(".npz"):
        with np.load(path) as data:
            return {name: data[name] for name in data.files}
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
        if not isinstance(data, dict):
            raise ValueError(
                f"{path} must hold a JSON object keyed by input name. "
                f"Received: {type(data).__name__}"
            )
        return {name: np.asarray(value) for name, value in data.items()}
    raise ValueError(f"--inputs must be a .npz or .json file. Received: {path}")


class LiteRTModel:
    """A `.tflite` model with named inputs and outputs and dynamic shapes."""

    def __init__(self, path, num_threads=None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:
            raise SystemExit(
                "ai-edge-litert is not installed: "
                "pip install 'ai-edge-litert==2.3.0'"
            ) from error
        self.interpreter = Interpreter(model_path=path, num_threads=num_threads)
        signatures = self.interpreter.get_signature_list()
        if signatures:
            key = SIGNATURE_KEY
            if key not in signatures:
                key = next(iter(signatures))
            runner = self.interpreter.get_signature_runner(key)
            inputs, outputs = runner.get_input_details(), runner.get_output_details()
        else:  # a model converted without signatures: use tensor names
            inputs = {d["name"]: d for d in self.interpreter.get_input_details()}
            outputs = {d["name"]: d for d in self.interpreter.get_output_details()}
        self.inputs = {name: (d["index"], d["dtype"]) for name, d in inputs.items()}
        self.outputs = {name: d["index"] for name, d in outputs.items()}
        self._shapes = None

    def __call__(self, feeds):
        missing = sorted(set(self.inputs) - set(feeds))
        extra = sorted(set(feeds) - set(self.inputs))
        if missing or extra:
            raise ValueError(
                f"The model takes inputs {sorted(self.inputs)}. "
                f"Missing: {missing}; unknown: {extra}"
            )
        shapes = {name: np.shape(value) for name, value in feeds.items()}
        if shapes != self._shapes:
            for name, shape in shapes.items():
                self.interpreter.resize_tensor_input(
                    self.inputs[name][0], shape, strict=True
                )
            self.interpreter.allocate_tensors()
            self._shapes = shapes
        for name, value in feeds.items():
            index, dtype = self.inputs[name]
            self.interpreter.set_tensor(index, np.asarray(value, dtype=dtype))
        self.interpreter.invoke()
        return {
            name: np.array(self.interpreter.get_tensor(index))
            for name, index in self.outputs.items()
        }


def median_latency_ms(model, feeds, repeats):
    model(feeds)  # warm-up: allocation and delegate preparation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(feeds)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="the .tflite file")
    parser.add_argument("--inputs", required=True, help=".npz or .json inputs")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads")
    parser.add_argument("--save-outputs", help="write the outputs to this .npz")
    args = parser.parse_args(argv)

    model = LiteRTModel(args.model, num_threads=args.threads)
    feeds = load_inputs(args.inputs)
    outputs = model(feeds)
    for name, value in sorted(outputs.items()):
        print(f"{name}: shape={value.shape} dtype={value.dtype}")
        print(np.array2string(value, precision=6, threshold=64))
    batch = next(iter(feeds.values())).shape[0]
    latency = median_latency_ms(model, feeds, args.repeats)
    print(f"latency: {latency:.3f} ms (median of {args.repeats} runs, batch {batch})")
    if args.save_outputs:
        np.savez(args.save_outputs, **outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
