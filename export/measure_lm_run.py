"""A finished `keras-lowrank finetune --task causal-lm` run exported again
(by default as a dynamic-range int8 LiteRT generator) and measured on the
run's own test prompts in the runtime, next to the run's Keras figure, as
docs/results.md's language-model table quotes it:

    nice -n 10 .venv/bin/python export/measure_lm_run.py runs/demo-lm \\
        --tflite-quantize dynamic --out runs/demo-lm-int8.json

The artifact is written to a temporary folder and removed (`--keep PATH`
keeps it).
"""

import argparse
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a run folder of finetune --task causal-lm")
    parser.add_argument("--format", default="tflite", choices=("tflite", "onnx"))
    parser.add_argument("--tflite-quantize", default="dynamic",
                        choices=("none", "dynamic"))
    parser.add_argument("--keep-float", nargs="+", default=None, metavar="PATTERN",
                        help="with dynamic: layers left in float32 (default: "
                        "the run's own setting)")
    parser.add_argument("--keep", default=None, metavar="PATH",
                        help="write the artifact here instead of a temporary folder")
    parser.add_argument("--out", default=None, help="a JSON file of the measurement")
    args = parser.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from keras_lowrank.lm_finetune import export_lm_run

    quantize = None if args.tflite_quantize == "none" else args.tflite_quantize
    with tempfile.TemporaryDirectory(prefix="klr_measure_lm_run_") as folder:
        path = args.keep or os.path.join(folder, f"model.{args.format}")
        measured = export_lm_run(args.run, path, args.format,
                                 tflite_quantize=quantize,
                                 tflite_keep_float=args.keep_float)
    keys = ("format", "quantize", "keep_float", "size_bytes", "test_accuracy",
            "keras_test_accuracy", "next_token_agreement", "agreement",
            "time_to_first_token_ms", "decode_tokens_per_s")
    for key in keys:
        print(f"{key}: {measured.get(key)}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as file:
            json.dump(measured, file, indent=1, default=list)


if __name__ == "__main__":
    main()
