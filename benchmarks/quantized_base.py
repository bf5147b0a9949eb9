"""The `quantized` section: LoRA on an int8 / int4 base against a float one.

`quantized_step.py` runs once per model (the MiniLM classifier, the
SmolLM2 causal LM): LoRA on a frozen base held in float32 or in Keras'
int8 / int4 form (`base_quantization`, `quantize_frozen="all"`), the three
models' training steps timed round robin in one process. The tables give
the bytes of weights each holds (`klr.weight_bytes`) and its step time,
each against the float base of the same run.
"""

from benchmarks.report import _f
from benchmarks.report import _mb
from benchmarks.report import _ratio
from benchmarks.report import _skipped
from benchmarks.report import _table
from benchmarks.report import get

MODELS = ("classifier", "causal_lm")
TITLES = {"classifier": "Classifier", "causal_lm": "Causal LM"}
# Table order (results.json sorts its keys).
BASES = ("float32", "int8", "int4")


def markdown(section):
    """One table per model, or why it was not measured."""
    return "\n\n".join(_model_markdown(model, get(section, model)) for model in MODELS)


def _model_markdown(model, entry):
    bases = get(entry, "bases")
    if not bases or get(bases, "float32", "step") is None:
        return f"{TITLES[model]}: not measured: {_skipped(entry)}"
    float_entry = bases["float32"]
    rows = [[name, _mb(b["weight_bytes"]),
             _f(_ratio(b["weight_bytes"], float_entry["weight_bytes"]), ".3f"),
             f"{b['trainable_params']:,}", _f(b["step"]["median_s"]),
             _f(_ratio(b["step"]["median_s"], float_entry["step"]["median_s"]), ".2f")]
            for name, b in sorted(bases.items(), key=lambda item: BASES.index(item[0]))]
    rows_, tokens = entry["batch_shape"]
    return "\n\n".join([
        f"{TITLES[model]} ({entry['model']}), LoRA rank {entry['rank']} on "
        f"{entry['targets']}, every frozen Dense, EinsumDense and Embedding "
        f"quantized (a tied token table too); batch {rows_} x {tokens} tokens; "
        "the three models in one process, their steps timed round robin:",
        _table(["base", "weights MB", "vs float", "trainable params",
                "median s/step", "vs float"], rows),
    ])
