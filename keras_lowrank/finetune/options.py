"""`FinetuneOptions`: every setting of a fine-tuning run, validated once."""

import dataclasses
import numbers
import os

from keras_lowrank.exporters import get_format
from keras_lowrank.finetune import phone_artifacts as phone_lib
from keras_lowrank.finetune.checks import as_paths
from keras_lowrank.finetune.checks import as_tuple
from keras_lowrank.finetune.checks import check_fraction
from keras_lowrank.finetune.checks import check_positive_int
from keras_lowrank.finetune.checks import check_positive_number
from keras_lowrank.finetune.checks import check_text
from keras_lowrank.finetune.checks import is_number
from keras_lowrank.finetune.precision import PRECISIONS
from keras_lowrank.finetune.run_folder import export_formats

# What a run exports unless told otherwise; any of `export_formats()` may be
# asked for.
DEFAULT_EXPORT = ("tflite", "onnx")
# The phone artifacts a run writes unless told otherwise: all of them.
DEFAULT_PHONE_ARTIFACTS = phone_lib.NAMES
# `distribute`: one device (None), or a `keras_lowrank.distribution` kind.
DISTRIBUTE_KINDS = (None, "mirrored", "multi-worker")
# `startup_timeout` when None: each worker's data, model and first traced
# step, with room for a large training file tokenized before the first step.
DEFAULT_STARTUP_TIMEOUT_S = 1800.0
# The format `tflite_quantize` is named after. A run has no calibration
# data, so it takes the modes of that format that need none.
QUANTIZED_FORMAT = "tflite"
TFLITE_QUANTIZE_MODES = get_format(QUANTIZED_FORMAT).quantize_modes_without_calibration
# BERT packs [CLS] and [SEP] around each text: 3 tokens hold one of text.
MIN_SEQUENCE_LENGTH = 3


@dataclasses.dataclass(frozen=True)
class FinetuneOptions:
    """Settings of `finetune`: data, model, LoRA, training and export.

    The defaults fine-tune all-MiniLM-L6-v2 on the MR sentence-polarity data
    with rank-8 LoRA on the attention query and value projections, and export
    LiteRT (int8 dynamic-range) and ONNX artifacts, a raw-text LiteRT model
    for MediaPipe and a full-integer LiteRT model. The training defaults
    (at most 5 epochs, AdamW peaking at 1e-3, alpha 16, LoRA dropout 0.1)
    were chosen by measurement: test accuracy 0.826, 0.825 and 0.791 with
    seeds 1337 (the default), 1 and 2, each seed drawing its own split;
    4 epochs at 2e-3 without dropout gave 0.816, 0.814 and 0.793.

    Args:
        out: str. The output folder (adapters, artifacts, report, plot).
        model: str or None. A keras-hub preset or a Hugging Face folder of a
            BERT model. None means all-MiniLM-L6-v2 (`presets.minilm_path()`).
        train_files: tuple of str. CSV / TSV / JSONL files of (text, label).
            Empty means the MR polarity data from `cache_dir`.
        validation_files: tuple of str. A separate validation split; empty
            means a seeded, stratified share of the train files.
        test_files: tuple of str. A separate test split; empty means a
            seeded, stratified share of the train files.
        text_column: str. Column (or JSON key) of the text in the files.
        label_column: str. Column (or JSON key) of the label in the files.
        labels: tuple of str or None. The label names in id order; any other
            label in the files is an error. None: the labels found, sorted.
        cache_dir: str. Cache of the data (`<cache_dir>/mr_polarity`, `tfds`).
        rank: int. LoRA rank.
        alpha: float or None. LoRA scale numerator (`s = alpha / rank`);
            None means alpha = rank.
        dropout: float in [0, 1). Dropout on the LoRA path while training.
        targets: tuple of str. Patterns of the layers that get adapters, or
            `("all-linear",)`.
        epochs: int. Largest number of epochs; early stopping on validation
            accuracy may end sooner and keeps the best epoch's weights.
        patience: int. Epochs without a better validation accuracy before
            stopping.
        batch_size: int. Training and evaluation batch size.
        learning_rate: float. Peak AdamW learning rate (linear warmup over
            the first `warmup_fraction` of the steps, then cosine decay).
        weight_decay: float. AdamW weight decay.
        warmup_fraction: float in [0, 1). Share of the steps spent warming up.
        sequence_length: int. Tokens per text, [CLS] and [SEP] included
            (longer texts are truncated); at least 3, at most the model's
            `max_sequence_length` (checked by `finetune` before loading).
        max_train_examples: int or None. Train on only the first N training
            examples (for quick runs).
        max_eval_examples: int or None. Validate and test on only the first
            N examples of each split (for quick runs).
        export: tuple of str. Formats among `run_folder.export_formats()`
            (every registered format whose artifact is one file); empty
            skips export. Default: `DEFAULT_EXPORT`.
        tflite_quantize: str or None. LiteRT quantization, among
            `TFLITE_QUANTIZE_MODES`: None (float32), "float16" or "dynamic"
            (int8 weights). LiteRT's only: every other format is exported
            in float32.
        phone_artifacts: tuple of str. Phone artifacts among
            `phone_artifacts.NAMES` (`"text_classifier"`: raw text in
            MediaPipe; `"int8"`: full-integer LiteRT, calibrated on
            training texts), each measured on the raw test strings in its
            runtime; empty skips them. Default: all.
        seed: int. Seed of the data split, the shuffling, the initial
            adapter weights and dropout: a run with a given seed gives the
            same figures on the same machine, with a cold or a warm data
            cache.
        deterministic: bool. Enable TensorFlow op determinism
            (`tf.config.experimental.enable_op_determinism`, for the rest of
            the process: TensorFlow has no public way back). On a CPU it
            cost nothing measurable (issue 13: CPU seconds per MiniLM step
            within noise) and runs without it were bit-identical too, but
            it picks other kernels for a few ops, so its figures differ in
            the last digits from a run without it (the loss after 13 steps:
            0.66691744 vs 0.66691738); on a GPU it is what makes reductions
            reproducible, at some speed.
        precision: str. What training computes in, one of `PRECISIONS`:
            "float32", "bfloat16" or "float16" under a Keras mixed policy
            (variables, LoRA factors and optimizer state stay float32), or
            "auto": float16 on a GPU, bfloat16 on a CPU with AVX512_BF16 or
            AMX, float32 elsewhere (`precision.resolve_precision`; a
            precision the machine cannot run is an error). Evaluation and
            export are float32 in every case. The default is "float32", not
            "auto": the demo's published accuracy was measured in float32,
            and with "auto" the same command and seed would give other
            figures on a bfloat16 CPU than on any other; "auto" (~30% less
            CPU time per step on an AVX512_BF16 CPU) is one flag away.
        verbose: int. Keras' output while training: 0 none, 1 progress
            bars, 2 one line per epoch.
        distribute: str or None. None trains on one device; "mirrored" on
            every device of this machine (`tf.distribute.MirroredStrategy`);
            "multi-worker" on every worker `TF_CONFIG` names
            (`MultiWorkerMirroredStrategy`; every worker runs the same
            command). The classifier is built, adapted and compiled in the
            strategy's scope; `batch_size` is the global batch, split over
            the replicas; the chief alone evaluates, exports and writes
            `out` (see `keras_lowrank.finetune.distributed`).
        startup_timeout: positive number of seconds, or None.
            "multi-worker" only: how long a worker waits for every worker
            to finish the first training step (default, None:
            `DEFAULT_STARTUP_TIMEOUT_S`, 30 minutes). TensorFlow
            itself waits without a limit for a worker that never started or
            hung before training; past this time the worker writes one line
            to stderr and ends its process with status 3, leaving `out` as
            it was (see `keras_lowrank.finetune.startup_watchdog`).

    Example:
    ```python
    options = FinetuneOptions(out="runs/mine", epochs=3, rank=16)
    report = finetune(options)
    ```
    """

    out: str = "runs/demo"
    model: str | None = None
    train_files: tuple = ()
    validation_files: tuple = ()
    test_files: tuple = ()
    text_column: str = "text"
    label_column: str = "label"
    labels: tuple | None = None
    cache_dir: str = ".cache"
    rank: int = 8
    alpha: float | None = 16.0
    dropout: float = 0.1
    targets: tuple = ("query", "value")
    epochs: int = 5
    patience: int = 2
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    sequence_length: int = 64
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    export: tuple = DEFAULT_EXPORT
    tflite_quantize: str | None = "dynamic"
    phone_artifacts: tuple = DEFAULT_PHONE_ARTIFACTS
    seed: int = 1337
    deterministic: bool = True
    precision: str = "float32"
    verbose: int = 1
    distribute: str | None = None
    startup_timeout: float | None = None

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        for name in ("out", "cache_dir", "text_column", "label_column"):
            check_text(getattr(self, name), name)
        if self.model is not None:
            check_text(self.model, "model")
        for name in ("train_files", "validation_files", "test_files"):
            set_(name, as_paths(getattr(self, name), name))
        if not self.train_files and (self.validation_files or self.test_files):
            raise ValueError(
                "validation_files and test_files need train_files: the MR "
                "data has its own splits. Received: train_files=() with "
                f"validation_files={list(self.validation_files)}, "
                f"test_files={list(self.test_files)}"
            )
        if self.labels is not None:
            set_("labels", tuple(str(label) for label in as_tuple(self.labels, "labels")))
            if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
                raise ValueError(
                    "labels must hold at least two distinct names. Received: "
                    f"labels={list(self.labels)}"
                )
        for name in ("rank", "epochs", "patience", "batch_size", "sequence_length"):
            check_positive_int(getattr(self, name), name)
        if self.sequence_length < MIN_SEQUENCE_LENGTH:
            raise ValueError(
                f"sequence_length must be at least {MIN_SEQUENCE_LENGTH}: BERT "
                "packs [CLS] and [SEP] around each text, so a shorter one "
                f"holds no text. Received: sequence_length={self.sequence_length}"
            )
        for name in ("max_train_examples", "max_eval_examples"):
            if getattr(self, name) is not None:
                check_positive_int(getattr(self, name), name)
        if self.alpha is not None:
            check_positive_number(self.alpha, "alpha")
        check_positive_number(self.learning_rate, "learning_rate")
        check_fraction(self.dropout, "dropout")
        check_fraction(self.warmup_fraction, "warmup_fraction")
        if not is_number(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(
                "weight_decay must be a number >= 0. Received: "
                f"weight_decay={self.weight_decay!r}"
            )
        set_("targets", tuple(as_tuple(self.targets, "targets")))
        if not self.targets or not all(isinstance(t, str) and t for t in self.targets):
            raise ValueError(
                "targets must hold at least one non-empty layer pattern. "
                f"Received: targets={list(self.targets)}"
            )
        set_("export", tuple(as_tuple(self.export, "export")))
        _check_export(self.export)
        if self.tflite_quantize not in TFLITE_QUANTIZE_MODES:
            raise ValueError(
                f"Unrecognized tflite_quantize={self.tflite_quantize!r}. "
                f"Supported values are: {list(TFLITE_QUANTIZE_MODES)}"
            )
        set_("phone_artifacts", tuple(as_tuple(self.phone_artifacts, "phone_artifacts")))
        if len(set(self.phone_artifacts)) != len(self.phone_artifacts):
            raise ValueError(
                "phone_artifacts must not repeat a name. Received: "
                f"phone_artifacts={list(self.phone_artifacts)}"
            )
        for name in self.phone_artifacts:
            phone_lib.get_artifact(name)
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise ValueError(f"seed must be an integer. Received: seed={self.seed!r}")
        if not isinstance(self.deterministic, bool):
            raise ValueError("deterministic must be True or False. Received: "
                             f"deterministic={self.deterministic!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"Unrecognized precision={self.precision!r}. "
                             f"Supported values are: {list(PRECISIONS)}")
        if self.verbose not in (0, 1, 2) or isinstance(self.verbose, bool):
            raise ValueError(
                f"verbose must be 0, 1 or 2. Received: verbose={self.verbose!r}")
        if self.distribute not in DISTRIBUTE_KINDS:
            raise ValueError(f"Unrecognized distribute={self.distribute!r}. "
                             f"Supported values are: {list(DISTRIBUTE_KINDS)}")
        if self.startup_timeout is not None:
            check_positive_number(self.startup_timeout, "startup_timeout")
            if self.distribute != "multi-worker":
                raise ValueError(
                    "startup_timeout is for distribute='multi-worker' (a "
                    "one-machine run has no other worker to wait for). "
                    f"Received: startup_timeout={self.startup_timeout!r} with "
                    f"distribute={self.distribute!r}"
                )
        if os.path.isfile(self.out):
            raise ValueError(
                f"out must be a folder, but {self.out!r} is an existing file."
            )

    @property
    def targets_for_config(self):
        """`targets` as `LoRAConfig` takes it ("all-linear" unwrapped)."""
        if self.targets == ("all-linear",):
            return "all-linear"
        return self.targets

    def to_dict(self):
        """A JSON-ready dict of every option."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()
        }


def _check_export(export):
    supported = export_formats()
    records = [_record_or_none(name) for name in export]
    if any(r is None for r in records) or len(set(export)) != len(export):
        raise ValueError(
            f"Unrecognized or repeated export format in export={list(export)}. "
            f"Supported formats are: {list(supported)}"
        )
    folders = [record for record in records if record.name not in supported]
    if folders:
        raise ValueError(
            f"export format {folders[0].name!r} ({folders[0].title}) writes a "
            "folder, but a run folder holds one file per artifact. Supported "
            f"formats are: {list(supported)}"
        )


def _record_or_none(name):
    try:
        return get_format(name)
    except ValueError:
        return None
