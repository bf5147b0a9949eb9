"""The `quantized` section: LoRA on an int8 / int4 base against a float one.

The same MiniLM LoRA training step as `train_step.py` (query and value,
the bench's batch), with the frozen base held float (`klr_lora`), or as
Keras' int8 or int4 kernels (`base_quantization`, `quantize_frozen="all"`:
every frozen Dense, EinsumDense and Embedding). Each configuration runs in
its own process, the three interleaved per round; the table gives the
bytes of weights each holds (`klr.weight_bytes`), its step time and peak
RSS, each against the float base of the same run. The causal-LM child
(`quantized_lm_step.py`) times SmolLM2's step on the three bases in one
process, round robin.
"""

from benchmarks.report import _f
from benchmarks.report import _mb
from benchmarks.report import _ratio
from benchmarks.report import _skipped
from benchmarks.report import _table
from benchmarks.report import get

FLOAT = "klr_lora"
# config -> the base_quantization it builds (`keras_setup.build_classifier`).
QUANTIZED = {"klr_lora_int8": "int8", "klr_lora_int4": "int4"}
CONFIGS = (FLOAT, *QUANTIZED)
LABELS = {FLOAT: "float32 base", "klr_lora_int8": "int8 base",
          "klr_lora_int4": "int4 base"}


def markdown(section, lm_section=None):
    """The section's tables, or why each was not measured."""
    return "\n\n".join([_classifier_markdown(section), _lm_markdown(lm_section)])


def _lm_markdown(entry):
    bases = get(entry, "bases")
    if not bases or get(bases, "float32", "step") is None:
        return f"Causal LM: not measured: {_skipped(entry)}"
    float_entry = bases["float32"]
    rows = [[name, _mb(b["weight_bytes"]),
             _f(_ratio(b["weight_bytes"], float_entry["weight_bytes"]), ".3f"),
             f"{b['trainable_params']:,}", _f(b["step"]["median_s"]),
             _f(_ratio(b["step"]["median_s"], float_entry["step"]["median_s"]), ".2f")]
            for name, b in bases.items()]
    rows_, tokens = entry["batch_shape"]
    return "\n\n".join([
        f"Causal LM ({entry['model']}), LoRA rank {entry['rank']} on every "
        f"linear layer, every frozen layer quantized (the tied token table "
        f"too); batch {rows_} x {tokens} tokens; the three models in one "
        "process, their steps timed round robin:",
        _table(["base", "weights MB", "vs float", "trainable params",
                "median s/step", "vs float"], rows),
    ])


def _classifier_markdown(section):
    float_entry = get(section, FLOAT)
    if get(float_entry, "step") is None:
        return f"Not measured: {_skipped(float_entry)}"
    rows = []
    for config in CONFIGS:
        entry = get(section, config)
        if get(entry, "step") is None:
            rows.append([LABELS[config], f"not measured: {_skipped(entry)}", "", "", "",
                         "", ""])
            continue
        median = entry["step"]["median_s"]
        rows.append([
            LABELS[config], _mb(entry.get("weight_bytes")),
            _f(_ratio(entry.get("weight_bytes"), float_entry.get("weight_bytes")), ".3f"),
            _f(median), _f(_ratio(median, float_entry["step"]["median_s"]), ".2f"),
            _mb(entry.get("peak_rss_bytes")),
            _f(_ratio(entry.get("peak_rss_bytes"), float_entry.get("peak_rss_bytes")), ".2f"),
        ])
    return "\n\n".join([
        "MiniLM LoRA (query and value) on a frozen base held in float32 or in "
        "Keras' int8 / int4 form (every frozen Dense, EinsumDense and "
        "Embedding: `base_quantization`, `quantize_frozen=\"all\"`); the same "
        "training step as above, each configuration in its own process "
        "(peak RSS includes loading the float model first). Accuracy over "
        "seeds: `docs/quantized_base.md`.",
        _table(["base", "weights MB", "vs float", "median s/step", "vs float",
                "peak RSS MB", "vs float"], rows),
    ])
