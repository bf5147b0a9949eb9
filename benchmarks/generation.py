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

Two runtimes of other projects run in the same rounds
(`generation_runtimes.py`): LiteRT-LM (`export_litertlm`, float32 and,
with "dynamic" in `settings.generation_quantize`, int8) and ONNX Runtime
GenAI (`export_onnx_genai`, float32: its int8 MatMulNBits decode is slow
on AVX2-only CPUs). Their ratios to Keras are in
`other_runtimes_vs_keras` (`speedup_vs_keras`, which `decode_bound` reads
and labels as LiteRT, keeps this project's artifacts).
"""

import contextlib
import os
import statistics
import tempfile
import time

import numpy as np

from benchmarks import child
from benchmarks import decode_bound
from benchmarks import generation_runtimes as runtimes

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
LABELS = {"litert": "LiteRT (`load_generator`)", "litertlm": "LiteRT-LM",
          "genai": "ONNX Runtime GenAI"}


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


def _runtime_inputs(settings, prompts, folder):
    """`(texts, tokenizer)` of `runtimes.export_runners`: the prompts as
    LiteRT-LM gets them, and the tokenizer files (tiny: written here)."""
    if settings.generation_model == "tiny":
        word = runtimes.tiny_word_tokenizer(os.path.join(folder, "words"), 256)
        bpe = runtimes.tiny_bpe_tokenizer(os.path.join(folder, "bytes"), 256)
        texts = [" ".join(f"w{i}" for i in prompt) for prompt in prompts]
        return texts, {"litertlm": word, "genai": bpe, "genai_start": 1,
                       "genai_prompts": runtimes.BPE_PROMPTS}
    from keras_lowrank.models import presets

    path = os.path.join(presets.smollm2_path(), "tokenizer.json")
    # The engine puts SmolLM2's start token, <|im_start|>, before each text.
    texts = [p.removeprefix("<|im_start|>") for p in PROMPTS]
    return texts, {"litertlm": path, "genai": path, "genai_prompts": PROMPTS}


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
    with tempfile.TemporaryDirectory(prefix="klr_bench_gen_", dir=work) as folder, \
            contextlib.ExitStack() as stack:
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
        texts, tokenizer = _runtime_inputs(settings, prompts, folder)
        entries, others = runtimes.export_runners(
            model, settings, folder, stack, prompts=prompts, texts=texts,
            tokenizer=tokenizer, new_tokens=new_tokens, max_length=MAX_LENGTH,
            prefill_lengths=PREFILL_LENGTHS, threads=threads,
            kv_cache_bytes=results["litert_float32"]["decode_bytes"]["kv_cache_bytes"])
        results.update(entries)
        compared = {name: [0, 0] for name in others}  # matching, compared
        # Warm: Keras traces generate() once per padded length.
        for prompt in prompts:
            for count in (1, new_tokens):
                _keras_generate(model, prompt, count)
        timings = {"keras": []} | {name: [] for name in (*generators, *others)}
        first_token = {name: [] for name in (*generators, *others)}
        for _ in range(settings.generation_rounds):
            for index, prompt in enumerate(prompts):
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
                for name, runner in others.items():
                    speed, first_ms, run_tokens = runner(index)
                    if speed is not None:  # None: stopped after one token
                        timings[name].append(speed)
                    first_token[name].append(first_ms)
                    if run_tokens is not None:
                        counts = runtimes.timed_agreement(run_tokens, tokens)
                        compared[name] = [a + b for a, b in zip(compared[name], counts)]
    for name, values in timings.items():
        entry = results.setdefault(name, {})
        entry["decode_tokens_per_s"] = statistics.median(values) if values else None
        entry["decode_tokens_per_s_all"] = values
        if name in first_token:
            entry["time_to_first_token_ms"] = statistics.median(first_token[name])
    for name, (matching, count) in compared.items():
        if count:  # GenAI: its tokens, against generate()'s
            results[name]["timed_agreement"] = matching / count
    # The same float32 weights, the same math.
    results["keras"]["decode_bytes"] = results["litert_float32"]["decode_bytes"]
    keras_speed = results["keras"]["decode_tokens_per_s"]
    results["speedup_vs_keras"] = {
        name: results[name]["decode_tokens_per_s"] / keras_speed
        for name in generators
    }
    results["other_runtimes_vs_keras"] = {
        name: (None if results[name]["decode_tokens_per_s"] is None
               else results[name]["decode_tokens_per_s"] / keras_speed)
        for name in others
    }
    return results


if __name__ == "__main__":
    child.main(measure)


def _row(entry, name, ratio):
    run = entry[name]
    kind, precision = name.split("_", 1)
    label = f"{LABELS[kind]} {precision}"
    if "error" in run:
        return f"| {label} | not measured: {run['error'][:120]} | - | - | - | - | - |"
    speed = run.get("decode_tokens_per_s")

    def number(value, spec):
        return "-" if value is None else format(value, spec)

    return (f"| {label} | {number(speed, '.1f')} | {number(ratio, '.2f')} | "
            f"{number(run.get('time_to_first_token_ms'), '.1f')} | "
            f"{number(run.get('agreement'), '.3f')} | "
            f"{number(run.get('next_token_agreement'), '.3f')} | "
            f"{number(run.get('size_bytes') and run['size_bytes'] / 1e6, ',.2f')} |")


def markdown(entry):
    """RESULTS.md's section body for this child's result (or why not)."""
    if not entry or "keras" not in entry:
        reason = (entry or {}).get("skipped") or (entry or {}).get("error")
        return f"Not measured: {reason or 'not run'}"
    keras_speed = entry["keras"]["decode_tokens_per_s"]
    rows = [f"| Keras `generate()` (greedy) | {keras_speed:.1f} | 1.00 | - | - | - | - |"]
    ratios = {**entry.get("speedup_vs_keras", {}),
              **entry.get("other_runtimes_vs_keras", {})}
    names = [*sorted(entry.get("speedup_vs_keras", {})),
             *(n for n in ("litertlm_float32", "litertlm_dynamic", "genai_float32")
               if n in entry)]
    rows += [_row(entry, name, ratios.get(name)) for name in names]
    return "\n".join([
        f"{entry['model']}, batch 1, prompts of {entry['prompt_lengths']} tokens "
        "(LiteRT-LM: the start token it adds first, where a prompt lacks it), "
        f"{entry['new_tokens']} new tokens (LiteRT-LM and GenAI stop early where "
        f"they pick a stop token), cache {entry['max_length']}, {entry['rounds']} "
        "interleaved rounds (medians). Agreement: the export's check in the "
        "runtime against Keras' greedy tokens.",
        "",
        "| runner | decode tokens/s | vs Keras | first token ms | token agreement "
        "| next-token agreement | size MB |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ])
