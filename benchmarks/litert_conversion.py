"""SmolLM2's LiteRT generator written two ways, each in its own process:
LiteRT's `converter.convert()` as it is ("plain") and through
`keras_lowrank._compat.tensorflow.converted` ("converted": the SavedModel
read once, no buffer dedup). Prints CPU seconds and peak RSS of each write,
the two files' sizes and the largest difference of their signatures'
outputs on one random input.

    .venv/bin/python -m benchmarks.litert_conversion [--out-dir DIR]

About 4 minutes on 2 cores (a 652 MB file per way). Not part of `make
bench`; docs/testing.md quotes it.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

WAYS = ("plain", "converted")


def write(way, path):
    """Writes the generator `way`; returns its figures."""
    from keras_lowrank.generation import cached_causal_lm
    from keras_lowrank.generation import litert_generator
    from keras_lowrank.generation.generator_spec import GeneratorSpec
    from keras_lowrank.models import presets

    if way == "plain":
        class Plain:
            @staticmethod
            def converted(converter, **options):
                return converter.convert()

        litert_generator.tensorflow_compat = Plain
    model = presets.smollm2_causal_lm()
    spec = GeneratorSpec(
        format="tflite", max_length=64, prefill_lengths=(16,),
        cache_shape=cached_causal_lm.cache_shape(model, 64),
        vocabulary_size=cached_causal_lm.vocabulary_size(model),
        stop_token_ids=(2,), model=type(model).__name__, adapters=(),
        start_token_id=None)
    cpu, wall = time.process_time(), time.perf_counter()
    litert_generator.write_litert_generator(model, spec, path)
    return {"cpu_seconds": round(time.process_time() - cpu, 1),
            "wall_seconds": round(time.perf_counter() - wall, 1),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
            "bytes": os.path.getsize(path)}


def largest_difference(paths, seed=0):
    """The largest |difference| of each signature's outputs between the
    files, on one random input."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreters = [Interpreter(model_path=path) for path in paths]
    rng = np.random.default_rng(seed)
    largest = {}
    for name in interpreters[0].get_signature_list():
        runners = [i.get_signature_runner(name) for i in interpreters]
        inputs = {}
        for key, detail in runners[0].get_input_details().items():
            shape, dtype = detail["shape"], detail["dtype"]
            inputs[key] = (rng.normal(0, 0.1, shape) if dtype == np.float32
                           else rng.integers(0, 10, shape)).astype(dtype)
        first, second = (runner(**inputs) for runner in runners)
        largest[name] = max(float(np.max(np.abs(first[k] - second[k]))) for k in first)
    return largest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=None)
    parser.add_argument("--child", nargs=2, metavar=("WAY", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(write(*args.child)))
        return
    out_dir = args.out_dir or tempfile.mkdtemp(prefix="klr_conversion_")
    os.makedirs(out_dir, exist_ok=True)
    paths, rows = [], {}
    for way in WAYS:
        path = os.path.join(out_dir, f"smollm2_{way}.tflite")
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.litert_conversion", "--child", way, path],
            capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"the {way} child failed:\n{done.stderr[-3000:]}")
        rows[way] = json.loads(done.stdout.strip().splitlines()[-1])
        paths.append(path)
        print(way, rows[way], flush=True)
    print("largest output difference", largest_difference(paths))


if __name__ == "__main__":
    main()
