"""`RunOptions`: the settings every fine-tuning run shares, validated once.

A task's options (`FinetuneOptions`, `LMFinetuneOptions`) subclass it: they
give the shared fields their own defaults where the task wants others, add
the task's fields, and extend `__post_init__` with their checks. A task
says which formats it exports (`supported_exports`) and which LiteRT
quantize modes it takes (class attributes `EXPORT_FORMATS`,
`TFLITE_QUANTIZE_MODES`).
"""

import dataclasses
import math
import numbers
import os

from keras_lowrank.runs.checks import as_paths
from keras_lowrank.runs.checks import as_tuple
from keras_lowrank.runs.checks import check_fraction
from keras_lowrank.runs.checks import check_positive_int
from keras_lowrank.runs.checks import check_positive_number
from keras_lowrank.runs.checks import check_text
from keras_lowrank.runs.checks import is_number

# The format `tflite_quantize` is named after: LiteRT's alone.
QUANTIZED_FORMAT = "tflite"
# `base_quantization`: a float base (None), or Keras' int8 / int4 kernels
# under the adapters (`LoRAConfig.base_quantization`).
BASE_QUANTIZATIONS = (None, "int8", "int4")
# `quantize_frozen` with a `base_quantization`: the adapted kernels only, or
# every frozen Dense, EinsumDense and Embedding (`LoRAConfig.quantize_frozen`).
QUANTIZE_FROZEN = ("adapted", "all")
# Training examples an int4 base's Dense and EinsumDense kernels are fitted
# to (GPTQ, `add_adapters(calibration=...)`) when `base_calibration` is None;
# 0 rounds them to nearest. GPTQ's paper calibrates on 128 sequences.
BASE_CALIBRATION_EXAMPLES = 128
# AdaLoRA's initial rank when `adaptive_initial_rank` is None: 1.5 times
# the target, rounded up (PEFT's defaults `init_r=12`, `target_r=8`).
ADAPTIVE_INITIAL_RANK_FACTOR = 1.5


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Settings of every run: data, model, LoRA, training and export.

    Fields without a default here take the task's default (its subclass
    declares them again, with its value).

    Args:
        out: str. The output folder (adapters, artifacts, report, plot).
        model: str or None. The model folder or preset; None: the task's
            default model.
        train_files: tuple of str. Training files; empty: the MR data.
        validation_files: tuple of str. Held-out data for early stopping;
            empty: a seeded share of the train files.
        test_files: tuple of str. Test data; empty: a seeded share of the
            train files.
        cache_dir: str. Cache of the MR data.
        rank: int. LoRA rank.
        alpha: float or None. LoRA scale numerator (`s = alpha / rank`);
            None means alpha = rank.
        dropout: float in [0, 1). Dropout on the LoRA path while training.
        targets: tuple of str. Patterns of the layers that get adapters, or
            `("all-linear",)`.
        patience: int. Evaluations without improvement before stopping; the
            best evaluation's weights are kept.
        batch_size: int. Examples per step.
        learning_rate: float. Peak AdamW learning rate (linear warmup over
            the first `warmup_fraction` of the steps, then cosine decay).
        weight_decay: float. AdamW weight decay.
        warmup_fraction: float in [0, 1). Share of the steps warming up.
        sequence_length: int. Most tokens per example.
        max_train_examples: int or None. Train on the first N examples.
        max_eval_examples: int or None. Test (and validate) on the first N.
        export: tuple of str. Among the task's `supported_exports()`; empty
            skips export.
        tflite_quantize: str or None. LiteRT quantization, among the task's
            `TFLITE_QUANTIZE_MODES`; every other format is float32.
        seed: int. Seed of the split, shuffling, adapter weights, dropout.
        deterministic: bool. TensorFlow op determinism
            (`tf.config.experimental.enable_op_determinism`).
        verbose: int. Keras' output while training: 0, 1 or 2.
        base_quantization: None, "int8" or "int4". Hold the frozen kernels
            under the adapters in Keras' int8 / int4 form
            (`LoRAConfig.base_quantization`, docs/quantized_base.md).
        quantize_frozen: None, "adapted" or "all". With
            `base_quantization`: quantize the adapted kernels only, or every
            frozen Dense, EinsumDense and Embedding too. None (not given)
            means "adapted" with a `base_quantization`; given without one
            it is an error.
        base_calibration: int or None. With an int4 base: the training
            examples (the first ones) its Dense and EinsumDense kernels are
            fitted to by GPTQ; 0 rounds them to nearest. None means
            `BASE_CALIBRATION_EXAMPLES` under an int4 base; given with
            another base it is an error.
        adaptive_rank: int or None. AdaLoRA's `target_rank`: the adapters
            start at `adaptive_initial_rank` and end, on average, at this
            rank (docs/adalora.md). None: plain LoRA.
        adaptive_initial_rank: int or None. With `adaptive_rank`: the rank
            every adapter starts at; None means
            `ceil(ADAPTIVE_INITIAL_RANK_FACTOR * adaptive_rank)`. `rank` is
            set to it (the adapters' rank at the start). Given without
            `adaptive_rank`, or below it, it is an error.
    """

    # The task's: the formats `export` may name (a tuple, or a function
    # that reads them from the exporters' registry at each call), the
    # values `tflite_quantize` may take, and what its error says it
    # quantizes.
    EXPORT_FORMATS = ()
    TFLITE_QUANTIZE_MODES = (None,)
    QUANTIZED_WHAT = ""

    out: str
    model: str | None = None
    train_files: tuple = ()
    validation_files: tuple = ()
    test_files: tuple = ()
    cache_dir: str = ".cache"
    rank: int = 8
    alpha: float | None = 16.0
    dropout: float
    targets: tuple
    patience: int = 2
    batch_size: int
    learning_rate: float = 1e-3
    weight_decay: float
    warmup_fraction: float = 0.1
    sequence_length: int
    max_train_examples: int | None = None
    max_eval_examples: int | None
    export: tuple
    tflite_quantize: str | None
    seed: int = 1337
    deterministic: bool = True
    verbose: int
    base_quantization: str | None = None
    quantize_frozen: str | None = None
    base_calibration: int | None = None
    adaptive_rank: int | None = None
    adaptive_initial_rank: int | None = None

    @classmethod
    def supported_exports(cls) -> tuple[str, ...]:
        """The formats `export` may name (the task's `EXPORT_FORMATS`)."""
        formats = cls.EXPORT_FORMATS
        return tuple(formats() if callable(formats) else formats)

    def __post_init__(self):
        self._set_paths()
        for name in ("rank", "patience", "batch_size", "sequence_length"):
            check_positive_int(getattr(self, name), name)
        for name in ("max_train_examples", "max_eval_examples"):
            if getattr(self, name) is not None:
                check_positive_int(getattr(self, name), name)
        self._check_training()
        self.set_field("export", tuple(as_tuple(self.export, "export")))
        self.check_export()
        if self.tflite_quantize not in self.TFLITE_QUANTIZE_MODES:
            raise ValueError(
                f"Unrecognized tflite_quantize={self.tflite_quantize!r}"
                f"{self.QUANTIZED_WHAT}. Supported values are: "
                f"{list(self.TFLITE_QUANTIZE_MODES)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise ValueError(f"seed must be an integer. Received: seed={self.seed!r}")
        if not isinstance(self.deterministic, bool):
            raise ValueError("deterministic must be True or False. Received: "
                             f"deterministic={self.deterministic!r}")
        if self.verbose not in (0, 1, 2) or isinstance(self.verbose, bool):
            raise ValueError(
                f"verbose must be 0, 1 or 2. Received: verbose={self.verbose!r}")
        if os.path.isfile(self.out):
            raise ValueError(
                f"out must be a folder, but {self.out!r} is an existing file.")
        self._set_base_quantization()
        self._set_base_calibration()
        self._set_adaptive_rank()

    def set_field(self, name, value):
        """Sets field `name` of this frozen instance (in `__post_init__`)."""
        object.__setattr__(self, name, value)

    def _set_paths(self):
        for name in ("out", "cache_dir"):
            check_text(getattr(self, name), name)
        if self.model is not None:
            check_text(self.model, "model")
        for name in ("train_files", "validation_files", "test_files"):
            self.set_field(name, as_paths(getattr(self, name), name))
        if not self.train_files and (self.validation_files or self.test_files):
            raise ValueError(
                "validation_files and test_files need train_files: the MR "
                "data has its own splits. Received: train_files=() with "
                f"validation_files={list(self.validation_files)}, "
                f"test_files={list(self.test_files)}")

    def _check_training(self):
        if self.alpha is not None:
            check_positive_number(self.alpha, "alpha")
        check_positive_number(self.learning_rate, "learning_rate")
        check_fraction(self.dropout, "dropout")
        check_fraction(self.warmup_fraction, "warmup_fraction")
        if not is_number(self.weight_decay) or self.weight_decay < 0:
            raise ValueError("weight_decay must be a number >= 0. Received: "
                             f"weight_decay={self.weight_decay!r}")
        self.set_field("targets", tuple(as_tuple(self.targets, "targets")))
        if not self.targets or not all(isinstance(t, str) and t for t in self.targets):
            raise ValueError("targets must hold at least one non-empty layer "
                             f"pattern. Received: targets={list(self.targets)}")

    def _set_base_quantization(self):
        if self.base_quantization not in BASE_QUANTIZATIONS:
            raise ValueError(
                f"Unrecognized base_quantization={self.base_quantization!r}. "
                f"Supported values are: {list(BASE_QUANTIZATIONS)}")
        if self.quantize_frozen is None:
            if self.base_quantization is not None:
                self.set_field("quantize_frozen", QUANTIZE_FROZEN[0])
            return
        if self.quantize_frozen not in QUANTIZE_FROZEN:
            raise ValueError(
                f"Unrecognized quantize_frozen={self.quantize_frozen!r}. "
                f"Supported values are: {list(QUANTIZE_FROZEN)}")
        if self.base_quantization is None:
            raise ValueError(
                "quantize_frozen says which frozen layers a base_quantization "
                "quantizes, but none was given. Received: quantize_frozen="
                f"{self.quantize_frozen!r} with base_quantization=None. Pass "
                f"base_quantization, one of {list(BASE_QUANTIZATIONS[1:])}")

    def _set_base_calibration(self):
        if self.base_calibration is None:
            if self.base_quantization == "int4":
                self.set_field("base_calibration", BASE_CALIBRATION_EXAMPLES)
            return
        if (not isinstance(self.base_calibration, numbers.Integral)
                or isinstance(self.base_calibration, bool) or self.base_calibration < 0):
            raise ValueError(
                "base_calibration must be a whole number of examples >= 0 (0 "
                "rounds the int4 kernels to nearest). Received: "
                f"base_calibration={self.base_calibration!r}")
        if self.base_quantization != "int4":
            raise ValueError(
                "base_calibration is the number of training examples an int4 "
                "base is fitted to (GPTQ). Received: base_calibration="
                f"{self.base_calibration} with base_quantization="
                f"{self.base_quantization!r}. Pass base_quantization='int4', "
                "or leave base_calibration out.")

    def _set_adaptive_rank(self):
        if self.adaptive_rank is None:
            if self.adaptive_initial_rank is not None:
                raise ValueError(
                    "adaptive_initial_rank is AdaLoRA's starting rank, and "
                    "needs adaptive_rank, its target. Received: "
                    f"adaptive_initial_rank={self.adaptive_initial_rank!r} with "
                    "adaptive_rank=None")
            return
        check_positive_int(self.adaptive_rank, "adaptive_rank")
        if self.adaptive_initial_rank is None:
            self.set_field("adaptive_initial_rank", math.ceil(
                ADAPTIVE_INITIAL_RANK_FACTOR * self.adaptive_rank))
        check_positive_int(self.adaptive_initial_rank, "adaptive_initial_rank")
        if self.adaptive_rank > self.adaptive_initial_rank:
            raise ValueError(
                "adaptive_rank, the average rank AdaLoRA ends at, must be at "
                "most adaptive_initial_rank, the rank it starts at. Received: "
                f"adaptive_rank={self.adaptive_rank}, adaptive_initial_rank="
                f"{self.adaptive_initial_rank}")
        self.set_field("rank", self.adaptive_initial_rank)

    def check_export(self):
        """Refuses an unknown or repeated name in `export`.

        Raises:
            ValueError: naming `export` and the supported formats.
        """
        supported = self.supported_exports()
        if any(f not in supported for f in self.export) or \
                len(set(self.export)) != len(self.export):
            raise ValueError(
                f"Unrecognized or repeated export format in export="
                f"{list(self.export)}. Supported formats are: {list(supported)}")

    @property
    def targets_for_config(self):
        """`targets` as `klr.add_adapters` takes it ("all-linear" unwrapped)."""
        return "all-linear" if self.targets == ("all-linear",) else self.targets

    def to_dict(self):
        """A JSON-ready dict of every option."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}
