"""RESULTS.md's "One epoch against keras-hub's recipe" section (pure).

Two children, the same MR rows and optimizer: `finetune_epoch` (the
`finetune` pipeline, batches padded to their longest row) and
`keras_recipe_epoch` (keras-hub's `enable_lora` recipe, its preprocessor
padding every row to the sequence length).
"""

from benchmarks import report
from benchmarks.report import _f
from benchmarks.report import _table
from benchmarks.report import get

HEADING = "## One epoch against keras-hub's recipe"
# (results key, row label, the key of its wall seconds)
ROWS = (
    (report.FINETUNE_ROW, "`finetune` pipeline (batches padded to their longest row)",
     "train_seconds"),
    (report.RECIPE_ROW, "keras-hub recipe (`enable_lora`, every row padded)",
     "fit_seconds"),
)


def table(results):
    """One row per side: wall s, steps, tokens, test accuracy, vs the recipe.

    A side that did not run, or failed, reads `not measured: <why>`.
    """
    recipe_seconds = get(results, report.RECIPE_ROW, "fit_seconds")
    rows = []
    for key, label, seconds_key in ROWS:
        entry = results.get(key)
        seconds = get(entry, seconds_key)
        if seconds is None:
            rows.append([label, f"not measured: {report._skipped(entry)}"]
                        + [""] * 5)
            continue
        rows.append([
            label, _f(seconds, ".1f"), f"{entry['steps']:,}",
            f"{entry['padded_tokens']:,}", f"{entry['real_tokens']:,}",
            _f(entry.get("test_accuracy"), ".4f"),
            _f(report._ratio(seconds, recipe_seconds), ".2f"),
        ])
    return _table(["one epoch of MR", "wall s", "steps", "padded tokens",
                   "real tokens", "test accuracy", "vs the recipe"], rows)


def verdict(results):
    """The ratio against its target, as one sentence."""
    check = report.recipe_epoch_target(
        results, (results.get("ratios") or {}).get("finetune_vs_keras_recipe_epoch"))
    met = {True: "met", False: "**not met**", None: "not measured"}[check["met"]]
    return (f"`finetune_vs_keras_recipe_epoch` = {_f(check['value'], '.3f')} "
            f"(target {check['target']}): {met}.")


def paragraph(results):
    """What each side's seconds include, with this run's tokenizing time."""
    recipe = results.get(report.RECIPE_ROW) or {}
    tokenize = recipe.get("tokenize_seconds")
    return (
        "Same seeded split and rows, batch size, AdamW (warmup, cosine "
        "decay, weight decay) and 1 epoch; sequence length "
        f"{get(results, 'settings', 'train_sequence_length')}. `finetune`'s "
        "seconds are its train stage (compile, the steps with their tracing, "
        "validation), its texts tokenized before; the recipe's are `compile` + "
        "`fit` on raw texts (the steps with their tracing, validation, and "
        "its preprocessor tokenizing inside `fit`"
        + (f"; {tokenize:.1f} s when run alone" if tokenize is not None else "")
        + f"). LoRA rank {get(results, 'settings', 'rank')} on query and value "
        "in both; keras-hub's "
        "has alpha = rank and no LoRA dropout, `finetune`'s alpha 16 and "
        "dropout 0.1 (`benchmarks/keras_recipe_epoch.py`).")


def markdown(results):
    """The section's body: the table, the verdict, what was measured."""
    return "\n\n".join([table(results), verdict(results), paragraph(results)])
