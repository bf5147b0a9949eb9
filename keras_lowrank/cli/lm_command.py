"""`keras-lowrank finetune --task causal-lm`: the causal-LM arguments of the
finetune command, and its run.

The options both tasks share (`--train`, `--rank`, `--batch-size`, ...)
are the finetune command's own (`run_arguments.SHARED`); one the user did
not type takes the causal LM's default (`LMFinetuneOptions`), one the user
typed is kept as typed. Options of one task only are refused for the other
with a one-line error.
"""

import dataclasses

from keras_lowrank.cli import run_arguments
from keras_lowrank.lm_finetune.lm_finetune_options import LMFinetuneOptions

_LM_DEFAULTS = {f.name: f.default for f in dataclasses.fields(LMFinetuneOptions)}
# Options of the causal-LM group: argparse destination -> field.
LM_ONLY = {
    "max_steps": "max_steps", "eval_every": "eval_every",
    "tokenizer": "tokenizer_file", "text_field": "text_field",
    "samples": "samples", "max_new_tokens": "max_new_tokens",
    "export_max_length": "export_max_length",
    "max_validation_examples": "max_validation_examples",
    "tflite_keep_float": "tflite_keep_float",
}


def add_causal_lm_arguments(parser):
    """Adds the causal-LM argument group (every default None: not given)."""
    d = _LM_DEFAULTS
    group = parser.add_argument_group(
        "causal LM (--task causal-lm)",
        "A decoder LM (SmolLM2-135M-Instruct by default, or --model FOLDER, "
        "a Hugging Face folder) fine-tuned with LoRA on completion tokens: "
        "--train takes JSONL of prompt/completion or chat messages, or text "
        "(.txt, or JSONL with a text field); no --train means the MR task "
        "(sentence -> 'positive'/'negative'). Shared options not given take "
        f"these: rank {d['rank']}, alpha {d['alpha']}, dropout {d['dropout']}, "
        f"targets {' '.join(d['targets'])}, batch size {d['batch_size']}, "
        f"learning rate {d['learning_rate']}, sequence length "
        f"{d['sequence_length']}, export {' '.join(d['export'])}.")
    group.add_argument("--max-steps", type=int, default=None, metavar="N",
                       help=f"most training steps (default: {d['max_steps']})")
    group.add_argument("--eval-every", type=int, default=None, metavar="N",
                       help="steps between validation-loss evaluations, which "
                       f"early stopping counts (default: {d['eval_every']})")
    group.add_argument("--max-validation-examples", type=int, default=None,
                       metavar="N", help="validate on the first N validation "
                       f"examples (default: {d['max_validation_examples']})")
    group.add_argument("--tokenizer", default=None, metavar="FILE",
                       help="a tokenizer.json instead of the model folder's")
    group.add_argument("--text-field", default=None,
                       help=f"JSON key of plain-text lines (default: {d['text_field']})")
    group.add_argument("--samples", type=int, default=None, metavar="N",
                       help="test prompts whose generations before and after "
                       f"the report shows (default: {d['samples']})")
    group.add_argument("--max-new-tokens", type=int, default=None, metavar="N",
                       help="tokens generated per sample "
                       f"(default: {d['max_new_tokens']})")
    group.add_argument("--export-max-length", type=int, default=None, metavar="N",
                       help="cache positions of the exported generator "
                       f"(default: {d['export_max_length']})")
    group.add_argument("--tflite-keep-float", nargs="+", default=None,
                       metavar="PATTERN",
                       help="with --tflite-quantize dynamic: layers left in "
                       "float32, as patterns of their names (default: "
                       f"{' '.join(d['tflite_keep_float']) or 'none'})")


def reject_causal_lm_arguments(args):
    """Raises ValueError when a classifier run got causal-LM options."""
    run_arguments.refuse_given(args, tuple(LM_ONLY), "classifier")


def options_from_args(args) -> LMFinetuneOptions:
    """The `LMFinetuneOptions` of parsed arguments: the options typed, the
    causal LM's defaults for the rest.

    Args:
        args: argparse.Namespace, every option defaulting to None.

    Raises:
        ValueError: a classifier-only option was typed (`--precision`
            included: a causal-LM run trains in float32), or a bad value.
    """
    run_arguments.refuse_given(args, tuple(run_arguments.CLASSIFIER_ONLY),
                               "causal-lm")
    values = run_arguments.shared_values(args, LMFinetuneOptions.supported_exports())
    values.update(run_arguments.given_values(args, LM_ONLY))
    return LMFinetuneOptions(**values)


def run(args) -> int:
    """Runs `finetune_lm` for the parsed arguments.

    Returns:
        0, or 1 when an export failed (the rest of the report is written).
    """
    options = options_from_args(args)
    # The folder `main` names when the run is interrupted.
    args.out = options.out
    # The slow import (Keras, TensorFlow), after the usage errors.
    from keras_lowrank.lm_finetune import lm_pipeline

    return run_arguments.run_task(lm_pipeline.finetune_lm, options)
