"""Greedy text generation from an exported artifact: no TensorFlow, no Keras.

Needs `numpy`, `tokenizers` and the artifact's runtime: `ai-edge-litert`
for `.tflite`, `onnxruntime` for `.onnx`. The artifact comes from
`keras_lowrank.generation.export_generator`; it carries its cache length,
prefill lengths and stop tokens. The runtime is
`keras_lowrank/generation/runtime.py` (the loop, prefill then one decode
step per token, argmax each time, is `generator_loop.py` beside it),
loaded by path so that the package, and with it Keras, is never imported.

Usage:
    python export/generate.py smollm2.tflite \
        --tokenizer .cache/smollm2-135m-instruct/tokenizer.json \
        --prompt "The capital of France is" --max-new-tokens 32
    python export/generate.py base.tflite --adapter task_b.npz ...

`--adapter` feeds an adapter file of `write_runtime_adapter` to an artifact
exported with `runtime_adapters=True` (without it, such an artifact runs
the base model).

Prints the generated text on stdout (without the prompt), and with
`--stats` the timings on stderr. The time to first token of a fresh process
includes the runtime's one-time work on the first call (LiteRT's XNNPACK
packs the weights then: ~2 s for SmolLM2-135M on 2 busy cores, against
~0.2 s once warm); an app that keeps the interpreter pays it once. Exit status 2 with one line on stderr for
bad input: a prompt longer than the exported cache, a tokenizer that does
not match the model's vocabulary, a file that is not a generation artifact.
"""

import argparse
import importlib.util
import os
import sys

RUNTIME = os.path.join("keras_lowrank", "generation", "runtime.py")


def _runtime_path():
    """runtime.py of this checkout, else of the installed package."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidate = os.path.join(here, RUNTIME)
    if os.path.isfile(candidate):
        return candidate
    spec = importlib.util.find_spec("keras_lowrank")  # finds, never imports
    if spec is not None and spec.submodule_search_locations:
        root = os.path.dirname(list(spec.submodule_search_locations)[0])
        candidate = os.path.join(root, RUNTIME)
        if os.path.isfile(candidate):
            return candidate
    raise SystemExit(f"generate.py: error: cannot find {RUNTIME}")


def load_runtime():
    """keras_lowrank.generation.runtime, loaded by path (it loads the
    modules beside it the same way)."""
    spec = importlib.util.spec_from_file_location("_klr_runtime", _runtime_path())
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="generate.py",
        description="Greedy generation from a .tflite or .onnx artifact of "
        "keras_lowrank.generation.export_generator.",
    )
    parser.add_argument("artifact", help="the .tflite or .onnx file")
    parser.add_argument("--tokenizer", required=True,
                        help="the model's tokenizer.json")
    parser.add_argument("--prompt", required=True, help="the prompt text")
    parser.add_argument("--max-new-tokens", type=int, default=32,
                        help="the most tokens to generate (default 32)")
    parser.add_argument("--adapter", default=None,
                        help="an adapter .npz (write_runtime_adapter) for an "
                        "artifact exported with runtime_adapters=True")
    parser.add_argument("--threads", type=int, default=None,
                        help="runtime threads")
    parser.add_argument("--stats", action="store_true",
                        help="print time to first token and decode speed")
    args = parser.parse_args(argv)
    if args.max_new_tokens < 1:
        parser.error("--max-new-tokens must be at least 1")
    runtime = load_runtime()
    try:
        generator = runtime.load_generator(args.artifact, args.threads)
        if args.adapter:
            generator.load_adapter(args.adapter)
        tokenizer = runtime.load_tokenizer(
            args.tokenizer, generator.spec.vocabulary_size)
        # The model's start token first, as Keras' generate() has it.
        prompt = generator.spec.prompt_ids(tokenizer.encode(args.prompt).ids)
        result = generator.greedy(
            prompt, args.max_new_tokens, generator.spec.stop_token_ids)
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"generate.py: error: {error}", file=sys.stderr)
        return 2
    tokens = [t for t in result.tokens if t not in generator.spec.stop_token_ids]
    print(tokenizer.decode(tokens, skip_special_tokens=True))
    if result.stopped == "cache_full":
        print(f"generate.py: stopped after {len(result.tokens)} tokens: the "
              f"cache of {generator.spec.max_length} positions is full.",
              file=sys.stderr)
    if args.stats:
        speed = result.decode_tokens_per_s
        print(
            f"prompt {len(prompt)} tokens, {len(result.tokens)} generated "
            f"({result.stopped}); time to first token "
            f"{1000 * result.time_to_first_token_s:.1f} ms; decode "
            + (f"{speed:.1f} tokens/s" if speed else "n/a")
            + f"; {generator.runtime}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
