"""`FinetuneOptions`: every setting of a classifier fine-tuning run,
validated once."""

import dataclasses

from keras_lowrank.exporters import get_format
from keras_lowrank.finetune.precision import PRECISIONS
from keras_lowrank.runs import phone_artifacts as phone_lib
from keras_lowrank.runs.checks import as_tuple
from keras_lowrank.runs.checks import check_positive_int
from keras_lowrank.runs.checks import check_positive_number
from keras_lowrank.runs.checks import check_text
from keras_lowrank.runs.run_folder import export_formats
from keras_lowrank.runs.run_options import QUANTIZED_FORMAT
from keras_lowrank.runs.run_options import RunOptions

# What a run exports unless told otherwise; any of `export_formats()` may be
# asked for.
DEFAULT_EXPORT = ("tflite", "onnx")
# The phone artifacts a run writes when it exports: all of them.
DEFAULT_PHONE_ARTIFACTS = phone_lib.NAMES
# `distribute`: one device (None), or a `keras_lowrank.distribution` kind.
DISTRIBUTE_KINDS = (None, "mirrored", "multi-worker")
# `startup_timeout` when None: each worker's data, model and first traced
# step, with room for a large training file tokenized before the first step.
DEFAULT_STARTUP_TIMEOUT_S = 1800.0
# A run has no calibration data, so `tflite_quantize` takes the modes of
# `QUANTIZED_FORMAT` that need none.
TFLITE_QUANTIZE_MODES = get_format(QUANTIZED_FORMAT).quantize_modes_without_calibration
# Why a run on several devices refuses each of these adapter options.
_NOT_DISTRIBUTED = {
    "base_quantization": "the library does not lay out a quantized base "
                         "over devices",
    "adaptive_rank": "AdaLoRA's callback is not tested under a "
                     "distribution strategy",
}
# BERT packs [CLS] and [SEP] around each text: 3 tokens hold one of text.
MIN_SEQUENCE_LENGTH = 3


@dataclasses.dataclass(frozen=True, kw_only=True)
class FinetuneOptions(RunOptions):
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
        rank, alpha, dropout, targets: LoRA, as `RunOptions` says; here
            rank 8, alpha 16, dropout 0.1 on the query and value layers.
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
        phone_artifacts: tuple of str or None. Phone artifacts among
            `phone_artifacts.NAMES` (`"text_classifier"`: raw text in
            MediaPipe; `"int8"`: full-integer LiteRT, calibrated on
            training texts), each measured on the raw test strings in its
            runtime; empty skips them. None (the default): all of them
            when `export` names a format, none when it is empty. Whether
            the model can make them (MediaPipe runs only some tokenizers)
            is checked once it is loaded, before training.
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
        base_quantization, quantize_frozen: a quantized frozen base, as
            `RunOptions` says. Not with `distribute`, and not yet with a
            `precision` other than "float32".
        adaptive_rank, adaptive_initial_rank: AdaLoRA, as `RunOptions`
            says; its schedule spans every step of `epochs` (early stopping
            is off: `runs.adapter_setup.early_stopping`). Not yet with
            `distribute` or a `precision` other than "float32".

    Example:
    ```python
    options = FinetuneOptions(out="runs/mine", epochs=3, rank=16)
    report = finetune(options)
    ```
    """

    # Every registered one-file format, read at each check.
    EXPORT_FORMATS = staticmethod(export_formats)
    TFLITE_QUANTIZE_MODES = TFLITE_QUANTIZE_MODES

    # === Shared fields: the classifier's defaults ===
    out: str = "runs/demo"
    dropout: float = 0.1
    targets: tuple = ("query", "value")
    batch_size: int = 32
    weight_decay: float = 0.01
    sequence_length: int = 64
    max_eval_examples: int | None = None
    export: tuple = DEFAULT_EXPORT
    tflite_quantize: str | None = "dynamic"
    verbose: int = 1

    # === The classifier's own fields ===
    text_column: str = "text"
    label_column: str = "label"
    labels: tuple | None = None
    epochs: int = 5
    phone_artifacts: tuple | None = None
    precision: str = "float32"
    distribute: str | None = None
    startup_timeout: float | None = None

    def __post_init__(self):
        for name in ("text_column", "label_column"):
            check_text(getattr(self, name), name)
        super().__post_init__()
        if self.labels is not None:
            self.set_field("labels", tuple(
                str(label) for label in as_tuple(self.labels, "labels")))
            if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
                raise ValueError(
                    "labels must hold at least two distinct names. Received: "
                    f"labels={list(self.labels)}")
        check_positive_int(self.epochs, "epochs")
        if self.sequence_length < MIN_SEQUENCE_LENGTH:
            raise ValueError(
                f"sequence_length must be at least {MIN_SEQUENCE_LENGTH}: BERT "
                "packs [CLS] and [SEP] around each text, so a shorter one "
                f"holds no text. Received: sequence_length={self.sequence_length}")
        self._set_phone_artifacts()
        if self.precision not in PRECISIONS:
            raise ValueError(f"Unrecognized precision={self.precision!r}. "
                             f"Supported values are: {list(PRECISIONS)}")
        if self.distribute not in DISTRIBUTE_KINDS:
            raise ValueError(f"Unrecognized distribute={self.distribute!r}. "
                             f"Supported values are: {list(DISTRIBUTE_KINDS)}")
        self._check_adapter_options()
        if self.startup_timeout is not None:
            check_positive_number(self.startup_timeout, "startup_timeout")
            if self.distribute != "multi-worker":
                raise ValueError(
                    "startup_timeout is for distribute='multi-worker' (a "
                    "one-machine run has no other worker to wait for). "
                    f"Received: startup_timeout={self.startup_timeout!r} with "
                    f"distribute={self.distribute!r}")

    def _check_adapter_options(self):
        # The library lays out no quantized base over devices
        # (`klr.distribution.lora_layout_map` raises), AdaLoRA's gradient
        # taps are untested under a strategy, and neither is tried under a
        # mixed policy: refused rather than untested.
        refusals = []
        if self.distribute is not None:
            refusals.append((
                "distribute", "cannot be combined with distribute yet: {why}",
                "Leave one of them out"))
        if self.precision != "float32":
            refusals.append((
                "precision", "is not yet supported with precision other than "
                "'float32' (only float32 training is tested)",
                "Leave precision at 'float32'"))
        for other, problem, fix in refusals:
            for name in ("base_quantization", "adaptive_rank"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"{name} {problem.format(why=_NOT_DISTRIBUTED[name])}. "
                        f"Received: {name}={getattr(self, name)!r} with "
                        f"{other}={getattr(self, other)!r}. {fix}")

    def _set_phone_artifacts(self):
        if self.phone_artifacts is None:
            self.set_field("phone_artifacts",
                           DEFAULT_PHONE_ARTIFACTS if self.export else ())
        names = tuple(as_tuple(self.phone_artifacts, "phone_artifacts"))
        self.set_field("phone_artifacts", names)
        if len(set(names)) != len(names):
            raise ValueError(
                "phone_artifacts must not repeat a name. Received: "
                f"phone_artifacts={list(names)}")
        for name in names:
            phone_lib.get_artifact(name)

    def check_export(self):
        """Refuses an unknown or repeated format, or one that writes a folder.

        Raises:
            ValueError: naming `export` and the supported formats.
        """
        supported = self.supported_exports()
        records = [_record_or_none(name) for name in self.export]
        folders = [record for record in records if record is not None
                   and record.name not in supported]
        if folders and None not in records and \
                len(set(self.export)) == len(self.export):
            raise ValueError(
                f"export format {folders[0].name!r} ({folders[0].title}) writes a "
                "folder, but a run folder holds one file per artifact. Supported "
                f"formats are: {list(supported)}")
        super().check_export()


def _record_or_none(name):
    try:
        return get_format(name)
    except ValueError:
        return None
