"""`keras-lowrank finetune --task causal-lm`: the causal-LM arguments of the
finetune command, and its run.

The options both tasks share (`--train`, `--rank`, `--batch-size`, ...)
are the finetune command's own; where one is left at the classifier's
default, the causal-LM run takes its own default for it
(`LMFinetuneOptions`). Options of one task only are refused for the other
with a one-line error.
"""

import dataclasses

from keras_lowrank.lm_finetune.lm_finetune_options import GENERATION_FORMATS
from keras_lowrank.lm_finetune.lm_finetune_options import LMFinetuneOptions

TASKS = ("classifier", "causal-lm")
_LM_DEFAULTS = {f.name: f.default for f in dataclasses.fields(LMFinetuneOptions)}
# Shared command-line options: argparse destination -> LMFinetuneOptions field.
_SHARED = {
    "out": "out", "model": "model", "cache_dir": "cache_dir",
    "max_train_examples": "max_train_examples",
    "max_eval_examples": "max_eval_examples", "rank": "rank", "alpha": "alpha",
    "dropout": "dropout", "targets": "targets", "patience": "patience",
    "batch_size": "batch_size", "learning_rate": "learning_rate",
    "weight_decay": "weight_decay", "warmup_fraction": "warmup_fraction",
    "sequence_length": "sequence_length", "seed": "seed",
    "deterministic": "deterministic",
}
# Options of the causal-LM group: argparse destination -> field.
_LM_ONLY = {
    "max_steps": "max_steps", "eval_every": "eval_every",
    "tokenizer": "tokenizer_file", "text_field": "text_field",
    "samples": "samples", "max_new_tokens": "max_new_tokens",
    "export_max_length": "export_max_length",
    "max_validation_examples": "max_validation_examples",
    "tflite_keep_float": "tflite_keep_float",
}
# Classifier options a causal-LM run has no use for.
_CLASSIFIER_ONLY = ("text_column", "label_column", "labels", "epochs",
                    "precision", "distribute", "startup_timeout",
                    "phone_artifacts")


def add_causal_lm_arguments(parser):
    """Adds `--task` and the causal-LM argument group (defaults None: unset).

    Call it last: it records the parser's defaults of the shared and the
    classifier-only options (`args.shared_defaults`), against which a
    causal-LM run tells which ones were set.
    """
    d = _LM_DEFAULTS
    parser.add_argument("--task", choices=TASKS, default=TASKS[0],
                        help="what to fine-tune: a BERT text classifier, or a "
                        "decoder LM for generation (default: %(default)s)")
    group = parser.add_argument_group(
        "causal LM (--task causal-lm)",
        "A decoder LM (SmolLM2-135M-Instruct by default, or --model FOLDER, "
        "a Hugging Face folder) fine-tuned with LoRA on completion tokens: "
        "--train takes JSONL of prompt/completion or chat messages, or text "
        "(.txt, or JSONL with a text field); no --train means the MR task "
        "(sentence -> 'positive'/'negative'). Shared options left at their "
        "defaults take these: rank "
        f"{d['rank']}, alpha {d['alpha']}, dropout {d['dropout']}, targets "
        f"{' '.join(d['targets'])}, batch size {d['batch_size']}, learning "
        f"rate {d['learning_rate']}, sequence length {d['sequence_length']}, "
        f"export {' '.join(d['export'])}.")
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
    shared = (*_SHARED, *_CLASSIFIER_ONLY, "export")
    parser.set_defaults(shared_defaults={
        dest: parser.get_default(dest) for dest in shared})


def reject_causal_lm_arguments(args):
    """Raises ValueError when a classifier run got causal-LM options."""
    for dest in _LM_ONLY:
        if getattr(args, dest, None) is not None:
            raise ValueError(f"--{dest.replace('_', '-')} applies to --task "
                             "causal-lm only. Received: --task classifier")


def options_from_args(args) -> LMFinetuneOptions:
    """The `LMFinetuneOptions` of parsed arguments.

    A shared option whose value equals the parser's default
    (`args.shared_defaults`) counts as unset and takes the causal-LM
    default.

    Raises:
        ValueError: a classifier-only option was set, or a bad value.
    """
    classifier_defaults = args.shared_defaults
    for dest in _CLASSIFIER_ONLY:
        if hasattr(args, dest) and \
                _differs(getattr(args, dest), classifier_defaults.get(dest)):
            raise ValueError(f"--{dest.replace('_', '-')} applies to --task "
                             "classifier only. Received: --task causal-lm")
    values = {}
    for dest, field in _SHARED.items():
        value = getattr(args, dest)
        if dest in classifier_defaults and not _differs(value, classifier_defaults[dest]):
            continue
        values[field] = tuple(value) if isinstance(value, list) else value
    for dest, field in _LM_ONLY.items():
        if getattr(args, dest) is not None:
            values[field] = getattr(args, dest)
    for dest in ("train", "validation", "test"):
        values[f"{dest}_files"] = tuple(getattr(args, dest))
    export = list(args.export)
    if _differs(export, classifier_defaults.get("export")):
        if "none" in export and len(export) != 1:
            raise ValueError("--export none cannot be combined with formats. "
                             f"Received: --export {' '.join(export)}")
        if any(f not in GENERATION_FORMATS + ("none",) for f in export):
            raise ValueError(
                f"--task causal-lm exports generators: formats among "
                f"{list(GENERATION_FORMATS)}, or none. Received: "
                f"--export {' '.join(export)}")
        values["export"] = () if export == ["none"] else tuple(export)
    if args.tflite_quantize is not None:  # else the causal-LM default
        values["tflite_quantize"] = (None if args.tflite_quantize == "none"
                                     else args.tflite_quantize)
    values["verbose"] = 2 if args.quiet else 1
    return LMFinetuneOptions(**values)


def run(args) -> int:
    """Runs `finetune_lm` for the parsed arguments.

    Returns:
        0, or 1 when an export failed (the rest of the report is written).
    """
    options = options_from_args(args)
    from keras_lowrank.cli.finetune_command import exit_status
    from keras_lowrank.finetune import allocator
    from keras_lowrank.lm_finetune.lm_pipeline import finetune_lm

    allocator.keep_freed_memory()
    report = finetune_lm(options, log=lambda line: print(line, flush=True))
    return exit_status(report)


def _differs(value, default):
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return list(value) != list(default)
    return value != default
