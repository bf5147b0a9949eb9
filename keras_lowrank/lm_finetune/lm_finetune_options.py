"""`LMFinetuneOptions`: every setting of a causal-LM fine-tuning run,
validated once."""

import dataclasses
import os

# The option checks of the classifier's runs, shared so that both kinds of
# run refuse a bad value with the same words.
from keras_lowrank.finetune.checks import as_paths
from keras_lowrank.finetune.checks import as_tuple
from keras_lowrank.finetune.checks import check_fraction
from keras_lowrank.finetune.checks import check_positive_int
from keras_lowrank.finetune.checks import check_positive_number
from keras_lowrank.finetune.checks import check_text
from keras_lowrank.finetune.checks import is_number

GENERATION_FORMATS = ("tflite", "onnx")
# What `export_generator` quantizes a generator with (None: float32).
TFLITE_QUANTIZE_MODES = (None, "dynamic")
# The layers a dynamic-range int8 generator keeps in float32: the token
# embedding's lookup table, which LiteRT would quantize with one scale for
# every row (the output head, the same matrix, is quantized per row). A
# lookup reads one row per token: it costs file size, not decode speed.
# Measured on SmolLM2's MR run, 800 test sentences (Keras 0.8325): all in
# int8 0.8187 (174 MB); table in float 0.8300 (259 MB); head in float
# 0.8225; down projections in float 0.8163; table and head 0.8287 (README,
# "Fine-tuning a language model").
DEFAULT_TFLITE_KEEP_FLOAT = (r"token_embedding_\d+/GatherV2",)


@dataclasses.dataclass(frozen=True)
class LMFinetuneOptions:
    """Settings of `finetune_lm`: data, model, LoRA, training and export.

    The defaults fine-tune SmolLM2-135M-Instruct on the MR sentence-polarity
    data posed as an instruction ("... positive or negative?") whose answer
    is the label word, with rank-8 LoRA on every linear layer, and export a
    LiteRT generator with a 160-position cache. They were sized so that
    `make demo-lm` fits 45 minutes on 2 CPU cores: measured once (seed
    1337), 37.8 minutes on 2 busy cores, test accuracy 0.165 before and
    0.835 after, in Keras and in LiteRT alike (README).

    Args:
        out: str. The output folder (adapters, artifact, report, plot).
        model: str or None. A Hugging Face causal-LM folder (config.json,
            model.safetensors, tokenizer.json, tokenizer_config.json). None
            means SmolLM2-135M-Instruct (`presets.smollm2_path()`).
        tokenizer_file: str or None. A tokenizer.json to use instead of the
            folder's; it must fit the model's vocabulary.
        train_files: tuple of str. JSONL (prompt/completion, messages or
            text lines) or .txt files. Empty means the MR task.
        validation_files: tuple of str. Held-out data for the loss,
            perplexity and early stopping; empty means a seeded 10% of the
            train files.
        test_files: tuple of str. Data whose prompts are answered by greedy
            generation (exact match of the first words) and whose loss is
            reported; empty means a seeded 20% of the train files.
        text_field: str. The JSON key of plain-text lines.
        cache_dir: str. Cache of the MR data.
        rank: int. LoRA rank.
        alpha: float or None. LoRA scale numerator (`alpha / rank`); None
            means alpha = rank.
        dropout: float in [0, 1). Dropout on the LoRA path while training.
        targets: tuple of str. Layer patterns, or `("all-linear",)`.
        max_steps: int. Most training steps (batches).
        eval_every: int. Steps between validation-loss evaluations; early
            stopping counts these.
        patience: int. Evaluations without a lower validation loss before
            stopping; the best evaluation's weights are kept.
        batch_size: int. Examples per step.
        learning_rate: float. Peak AdamW learning rate (linear warmup, then
            cosine decay to 0 at `max_steps`).
        weight_decay: float. AdamW weight decay.
        warmup_fraction: float in [0, 1). Share of the steps warming up.
        sequence_length: int. Most tokens of prompt plus completion; longer
            examples lose their last tokens.
        max_train_examples: int or None. Train on the first N examples.
        max_eval_examples: int or None. Test on the first N test examples
            (and validate on at most N); None: all of them.
        max_validation_examples: int or None. Validate (early stopping) on
            the first N validation examples: each evaluation runs them all.
        max_new_tokens: int. Tokens generated for each sample shown in the
            report.
        samples: int. Test prompts whose generations (before and after)
            the report shows.
        export: tuple of str. Among `GENERATION_FORMATS`; empty skips export
            and the runtime measurement.
        export_max_length: int. Cache positions of the exported generator;
            at least the longest test prompt plus its answer.
        tflite_quantize: None (float32: the artifact's greedy tokens must
            equal Keras') or "dynamic" (int8 weights, LiteRT dynamic-range
            quantization: the report gives the next-token agreement with
            Keras and the task accuracy measured in LiteRT). LiteRT only;
            an ONNX generator stays float32, as in the classifier's runs.
        tflite_keep_float: tuple of str. With `tflite_quantize="dynamic"`:
            patterns of the layers left in float32
            (`export_generator(keep_float=...)`); default
            `DEFAULT_TFLITE_KEEP_FLOAT`.
        seed: int. Seed of the split, shuffling, adapter weights, dropout.
        deterministic: bool. TensorFlow op determinism (as the classifier's
            runs).
        verbose: int. Keras' output while training: 0, 1 or 2.

    Example:
    ```python
    report = finetune_lm(LMFinetuneOptions(out="runs/lm", max_steps=100))
    ```
    """

    out: str = "runs/demo-lm"
    model: str | None = None
    tokenizer_file: str | None = None
    train_files: tuple = ()
    validation_files: tuple = ()
    test_files: tuple = ()
    text_field: str = "text"
    cache_dir: str = ".cache"
    rank: int = 8
    alpha: float | None = 16.0
    dropout: float = 0.0
    targets: tuple = ("all-linear",)
    max_steps: int = 60
    eval_every: int = 20
    patience: int = 2
    batch_size: int = 8
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_fraction: float = 0.1
    sequence_length: int = 128
    max_train_examples: int | None = None
    max_eval_examples: int | None = 200
    max_validation_examples: int | None = 64
    max_new_tokens: int = 16
    samples: int = 4
    export: tuple = ("tflite",)
    export_max_length: int = 160
    tflite_quantize: str | None = None
    tflite_keep_float: tuple = DEFAULT_TFLITE_KEEP_FLOAT
    seed: int = 1337
    deterministic: bool = True
    verbose: int = 2

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        for name in ("out", "cache_dir", "text_field"):
            check_text(getattr(self, name), name)
        for name in ("model", "tokenizer_file"):
            if getattr(self, name) is not None:
                check_text(getattr(self, name), name)
        for name in ("train_files", "validation_files", "test_files"):
            set_(name, as_paths(getattr(self, name), name))
        if not self.train_files and (self.validation_files or self.test_files):
            raise ValueError(
                "validation_files and test_files need train_files: the MR "
                "task has its own splits. Received: train_files=() with "
                f"validation_files={list(self.validation_files)}, "
                f"test_files={list(self.test_files)}")
        for name in ("rank", "max_steps", "eval_every", "patience", "batch_size",
                     "sequence_length", "max_new_tokens", "export_max_length"):
            check_positive_int(getattr(self, name), name)
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) \
                or self.samples < 0:
            raise ValueError("samples must be an integer >= 0. Received: "
                             f"samples={self.samples!r}")
        for name in ("max_train_examples", "max_eval_examples",
                     "max_validation_examples"):
            if getattr(self, name) is not None:
                check_positive_int(getattr(self, name), name)
        if self.alpha is not None:
            check_positive_number(self.alpha, "alpha")
        check_positive_number(self.learning_rate, "learning_rate")
        check_fraction(self.dropout, "dropout")
        check_fraction(self.warmup_fraction, "warmup_fraction")
        if not is_number(self.weight_decay) or self.weight_decay < 0:
            raise ValueError("weight_decay must be a number >= 0. Received: "
                             f"weight_decay={self.weight_decay!r}")
        set_("targets", tuple(as_tuple(self.targets, "targets")))
        if not self.targets or not all(isinstance(t, str) and t for t in self.targets):
            raise ValueError("targets must hold at least one non-empty layer "
                             f"pattern. Received: targets={list(self.targets)}")
        set_("export", tuple(as_tuple(self.export, "export")))
        if any(f not in GENERATION_FORMATS for f in self.export) or \
                len(set(self.export)) != len(self.export):
            raise ValueError(
                f"Unrecognized or repeated export format in export="
                f"{list(self.export)}. Supported formats are: "
                f"{list(GENERATION_FORMATS)}")
        if self.tflite_quantize not in TFLITE_QUANTIZE_MODES:
            raise ValueError(
                f"Unrecognized tflite_quantize={self.tflite_quantize!r} for a "
                f"generator. Supported values are: {list(TFLITE_QUANTIZE_MODES)}")
        set_("tflite_keep_float", tuple(as_tuple(self.tflite_keep_float,
                                                  "tflite_keep_float")))
        if not all(isinstance(p, str) and p for p in self.tflite_keep_float):
            raise ValueError(
                "tflite_keep_float must hold non-empty layer patterns. "
                f"Received: tflite_keep_float={list(self.tflite_keep_float)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
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

    @property
    def targets_for_config(self):
        """`targets` as `klr.add_adapters` takes it ("all-linear" unwrapped)."""
        return "all-linear" if self.targets == ("all-linear",) else self.targets

    def to_dict(self):
        """A JSON-ready dict of every option."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}
