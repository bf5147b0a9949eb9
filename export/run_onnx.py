"""Run an `.onnx` artifact with ONNX Runtime only: no TensorFlow, no Keras.

Needs `numpy` and `onnxruntime` (`pip install onnxruntime==1.32.0`); ONNX
Runtime Mobile runs the same file on Android and iOS.

Usage:
    python export/run_onnx.py model.onnx --inputs inputs.npz
    python export/run_onnx.py model.onnx --inputs inputs.json \
        --repeats 50 --threads 2 --save-outputs outputs.npz

`--inputs` is a `.npz` file or a JSON object whose keys are the model's
input names and whose values are arrays with a batch dimension.
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np

# ONNX type strings of the inputs this project exports.
_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


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


class ONNXModel:
    """An ONNX Runtime CPU session with named inputs and outputs."""

    def __init__(self, path, num_threads=None):
        try:
            import onnxruntime
        except ImportError as error:
            raise SystemExit(
                "onnxruntime is not installed: pip install 'onnxruntime==1.32.0'"
            ) from error
        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.session = onnxruntime.InferenceSession(
            path, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.inputs = {
            i.name: _NUMPY_TYPES.get(i.type) for i in self.session.get_inputs()
        }
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, feeds):
        missing = sorted(set(self.inputs) - set(feeds))
        extra = sorted(set(feeds) - set(self.inputs))
        if missing or extra:
            raise ValueError(
                f"The model takes inputs {sorted(self.inputs)}. "
                f"Missing: {missing}; unknown: {extra}"
            )
        feeds = {
            name: np.asarray(value, dtype=self.inputs[name])
            for name, value in feeds.items()
        }
        values = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, values))


def median_latency_ms(model, feeds, repeats):
    model(feeds)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(feeds)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="the .onnx file")
    parser.add_argument("--inputs", required=True, help=".npz or .json inputs")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads")
    parser.add_argument("--save-outputs", help="write the outputs to this .npz")
    args = parser.parse_args(argv)

    model = ONNXModel(args.model, num_threads=args.threads)
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
