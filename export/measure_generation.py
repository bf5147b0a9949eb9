"""SmolLM2-135M-Instruct exported for generation, float32 and dynamic int8:
token agreement with Keras' greedy generation, size, time to first token
and decode speed, as docs/export.md quotes them.

The prompts and cache are those of the large test
(tests/generation/test_smollm2.py): 8 prompts (4 chat, 4 plain; 5 to 24
tokens) x 32 new tokens, a 64-position cache, LiteRT prefill chunks of 16.
Each export takes several minutes on 2 cores; run it nice'd:

    nice -n 10 .venv/bin/python export/measure_generation.py \
        --formats tflite,onnx --quantize none,dynamic
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
    parser.add_argument("--formats", default="tflite")
    parser.add_argument("--quantize", default="dynamic",
                        help="comma-separated: none, dynamic")
    parser.add_argument("--out", default=None, help="a JSON file of the reports")
    args = parser.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from keras_lowrank.generation import export_generator
    from keras_lowrank.models import presets
    from tests.generation.test_smollm2 import MAX_LENGTH
    from tests.generation.test_smollm2 import NEW_TOKENS
    from tests.generation.test_smollm2 import PROMPTS

    model = presets.smollm2_causal_lm()
    tokenizer = os.path.join(presets.smollm2_path(), "tokenizer.json")
    reports = {}
    with tempfile.TemporaryDirectory(prefix="klr_measure_gen_") as folder:
        for format in args.formats.split(","):
            for mode in args.quantize.split(","):
                quantize = None if mode == "none" else mode
                options = {"prefill_lengths": (16,)} if format == "tflite" else {}
                report = export_generator(
                    model, os.path.join(folder, f"smollm2_{mode}.{format}"),
                    format, max_length=MAX_LENGTH, tokenizer=tokenizer,
                    prompts=PROMPTS, max_new_tokens=NEW_TOKENS,
                    quantize=quantize, min_agreement=0.0, **options)
                print(report, flush=True)
                reports[f"{format}_{mode}"] = report.to_dict()
    if args.out:
        with open(args.out, "w") as file:
            json.dump(reports, file, indent=1, default=list)


if __name__ == "__main__":
    main()
