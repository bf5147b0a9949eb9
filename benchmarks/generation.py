"""Child: decode tokens/s of the LiteRT generator against Keras `generate()`.

The same model (SmolLM2-135M-Instruct; with `--quick` a tiny Llama 3 built
from config), the same prompts, batch 1, on the same machine, interleaved
in one process: each round runs every prompt once through keras-hub's
`generate()` (greedy sampler, no stop token) and once through the LiteRT
artifact (`runtime.load_generator(...).greedy`), float32 and, when
`settings.generation_quantize` holds it, dynamic-range int8.

Keras' `generate()` returns only its tokens, so its decode speed comes from
two calls per prompt: `t(N)` for N new tokens and `t(1)` for one, both warm
(traced before timing); decode tokens/s = (N - 1) / (t(N) - t(1)). The
artifact's comes from its own clock: from the first token to the last.
Both produce the same tokens (the export checks it; the float tokens are
compared again here). LiteRT runs with as many threads as the machine has
cores, as TensorFlow does (its default, one thread, decoded a 4-layer
SmolLM2-shaped model ~1.3x slower than two threads on 2 cores).

Each runner's `decode_bytes` are the bytes its decode step reads per
token (`decode_bound.litert_decode_bytes`; Keras: the float32
artifact's), which `make bench` sets against the memory bandwidth.
"""

import os
import statistics
import tempfile
import time

import numpy as np

from benchmarks import child
from benchmarks import decode_bound

# SmolLM2 chat and plain prompts (8 to 24 tokens); tiny: seeded ids.
PROMPTS = (
    "The capital of France is",
    "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n"
    "<|im_start|>assistant\n",
    "def fibonacci(n):",
    "Once upon a time",
)
PREFILL_LENGTHS = (32,)
MAX_LENGTH = 96


def _model_and_prompts(settings):
    if settings.generation_model == "tiny":
        import keras_hub

        backbone = keras_hub.models.Llama3Backbone(
            vocabulary_size=256, num_layers=2, num_query_heads=4,
            num_key_value_heads=2, hidden_dim=64, intermediate_dim=128,
        )
        model = keras_hub.models.Llama3CausalLM(backbone=backbone,
                                                preprocessor=None)
        rng = np.random.default_rng(settings.seed)
        return model, [rng.integers(3, 256, size=n).tolist() for n in (5, 12)]
    from tokenizers import Tokenizer

    from keras_lowrank.models import presets

    folder = presets.smollm2_path()
    tokenizer = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    model = presets.smollm2_causal_lm(preprocessor=None)
    return model, [tokenizer.encode(p).ids for p in PROMPTS]


def _keras_generate(model, prompt, new_tokens):
    """Seconds and new tokens of one greedy `generate()` call at batch 1."""
    length = len(prompt) + new_tokens
    token_ids = np.zeros((1, length), "int32")
    token_ids[0, :len(prompt)] = prompt
    mask = np.zeros((1, length), bool)
    mask[0, :len(prompt)] = True
    start = time.perf_counter()
    output = model.generate({"token_ids": token_ids, "padding_mask": mask},
                            stop_token_ids=None)
    seconds = time.perf_counter() - start
    return seconds, tuple(int(t) for t in output["token_ids"][0, len(prompt):])


def measure(settings, config, work):
    import keras

    from keras_lowrank.generation import export_generator
    from keras_lowrank.generation import load_generator
    from keras_lowrank.lm_finetune.lm_finetune_options import DEFAULT_TFLITE_KEEP_FLOAT

    keras.utils.set_random_seed(settings.seed)
    threads = os.cpu_count()
    try:
        model, prompts = _model_and_prompts(settings)
    except FileNotFoundError as error:
        return {"skipped": str(error).splitlines()[0]}
    model.compile(sampler="greedy")
    new_tokens = settings.generation_new_tokens
    results = {"model": settings.generation_model, "new_tokens": new_tokens,
               "prompt_lengths": [len(p) for p in prompts],
               "max_length": MAX_LENGTH, "rounds": settings.generation_rounds,
               "litert_threads": threads}
    with tempfile.TemporaryDirectory(prefix="klr_bench_gen_", dir=work) as folder:
        generators = {}
        for quantize in (None, *settings.generation_quantize):
            name = f"litert_{quantize or 'float32'}"
            start = time.perf_counter()
            report = export_generator(
                model, os.path.join(folder, f"{name}.tflite"), "tflite",
                max_length=MAX_LENGTH, prefill_lengths=PREFILL_LENGTHS,
                prompts=prompts, max_new_tokens=new_tokens, quantize=quantize,
                min_agreement=0.0, num_threads=threads,
                # As fine-tuning runs ship it: the lookup table in float32.
                keep_float=DEFAULT_TFLITE_KEEP_FLOAT if quantize else (),
            )
            generators[name] = load_generator(report.path, threads)
            results[name] = {"size_bytes": report.size_bytes,
                             "agreement": report.agreement,
                             "next_token_agreement": report.next_token_agreement,
                             "decode_bytes": decode_bound.litert_decode_bytes(report.path),
                             "export_s": time.perf_counter() - start}
        # Warm: Keras traces generate() once per padded length.
        for prompt in prompts:
            for count in (1, new_tokens):
                _keras_generate(model, prompt, count)
        timings = {"keras": []} | {name: [] for name in generators}
        first_token = {name: [] for name in generators}
        for _ in range(settings.generation_rounds):
            for prompt in prompts:
                one, _ = _keras_generate(model, prompt, 1)
                many, tokens = _keras_generate(model, prompt, new_tokens)
                timings["keras"].append((new_tokens - 1) / max(many - one, 1e-9))
                for name, generator in generators.items():
                    run = generator.greedy(prompt, new_tokens)
                    if name == "litert_float32" and run.tokens != tokens:
                        raise RuntimeError(
                            f"LiteRT float32 tokens differ from generate()'s "
                            f"on a {len(prompt)}-token prompt: {run.tokens} "
                            f"vs {tokens}")
                    timings[name].append(run.decode_tokens_per_s)
                    first_token[name].append(run.time_to_first_token_s * 1000)
    for name, values in timings.items():
        entry = results.setdefault(name, {})
        entry["decode_tokens_per_s"] = statistics.median(values)
        entry["decode_tokens_per_s_all"] = values
        if name in first_token:
            entry["time_to_first_token_ms"] = statistics.median(first_token[name])
    # The same float32 weights, the same math.
    results["keras"]["decode_bytes"] = results["litert_float32"]["decode_bytes"]
    keras_speed = results["keras"]["decode_tokens_per_s"]
    results["speedup_vs_keras"] = {
        name: results[name]["decode_tokens_per_s"] / keras_speed
        for name in generators
    }
    return results


if __name__ == "__main__":
    child.main(measure)


def markdown(entry):
    """RESULTS.md's section body for this child's result (or why not)."""
    if not entry or "keras" not in entry:
        reason = (entry or {}).get("skipped") or (entry or {}).get("error")
        return f"Not measured: {reason or 'not run'}"
    keras_speed = entry["keras"]["decode_tokens_per_s"]
    rows = [f"| Keras `generate()` (greedy) | {keras_speed:.1f} | 1.00 | - | - | - |"]
    for name in sorted(entry.get("speedup_vs_keras", {})):
        run = entry[name]
        rows.append(
            f"| LiteRT {name.split('_', 1)[1]} | {run['decode_tokens_per_s']:.1f} "
            f"| {entry['speedup_vs_keras'][name]:.2f} | "
            f"{run['time_to_first_token_ms']:.0f} | {run['agreement']:.3f} | "
            + (f"{run['next_token_agreement']:.3f} |"
               if run.get("next_token_agreement") is not None else "- |"))
    return "\n".join([
        f"{entry['model']}, batch 1, prompts of {entry['prompt_lengths']} tokens, "
        f"{entry['new_tokens']} new tokens, cache {entry['max_length']}, "
        f"{entry['rounds']} interleaved rounds (medians).",
        "",
        "| runner | decode tokens/s | vs Keras | first token ms | token agreement "
        "| next-token agreement |",
        "|---|---|---|---|---|---|",
        *rows,
    ])
