"""`LMFinetuneOptions`: every setting of a causal-LM fine-tuning run,
validated once."""

import dataclasses
import math

from keras_lowrank.runs.checks import as_tuple
from keras_lowrank.runs.checks import check_positive_int
from keras_lowrank.runs.checks import check_text
from keras_lowrank.runs.run_options import RunOptions

# This project's generators (LiteRT, ONNX), then the LLM runtimes: a
# LiteRT-LM bundle (`model.litertlm`) and an ONNX Runtime GenAI folder
# (`onnx_genai/`), the model folder's tokenizer and chat template inside;
# and `litertlm_lora/`: a LiteRT-LM base bundle and the run's LoRA file.
GENERATION_FORMATS = ("tflite", "onnx", "litertlm", "onnx_genai", "litertlm_lora")
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class LMFinetuneOptions(RunOptions):
    """Settings of `finetune_lm`: data, model, LoRA, training and export.

    The defaults fine-tune SmolLM2-135M-Instruct on the MR sentence-polarity
    data posed as an instruction ("... positive or negative?") whose answer
    is the label word, with rank-8 LoRA on every linear layer, and export a
    LiteRT generator with a 160-position cache. They were sized so that
    `make demo-lm` fits 45 minutes on 2 CPU cores: measured once (seed
    1337), 37.8 minutes on 2 busy cores, test accuracy 0.165 before and
    0.835 after, in Keras and in LiteRT alike (docs/results.md).

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
            and the runtime measurement. `litertlm` and `onnx_genai` are
            checked in LiteRT-LM and ONNX Runtime GenAI on the first test
            prompts' raw text (size, agreement, time to first token and
            decode tokens/s reported); the test answers are measured in
            GenAI from the run's ids, in LiteRT-LM from each test prompt's
            user message sent through its Conversation API.
            `litertlm_lora` writes a folder of a LiteRT-LM base bundle
            (`base.litertlm`, LoRA inputs at rank 16 or 32) and the run's
            adapters as LiteRT-LM's LoRA file (`adapters.lora.tflite`),
            swapped at run time; it needs LoRA on the attention
            projections only (`targets`), checked before training.
        export_max_length: int. Cache positions of the exported generator;
            at least the longest test prompt plus its answer.
        tflite_quantize: None (float32: the artifact's greedy tokens must
            equal Keras') or "dynamic" (int8 weights, LiteRT dynamic-range
            quantization: the report gives the next-token agreement with
            Keras and the task accuracy measured in LiteRT). LiteRT and
            LiteRT-LM (`litertlm_lora`: the base's weights) only; an ONNX generator or GenAI folder stays
            float32, as in the classifier's runs.
        tflite_keep_float: tuple of str. With `tflite_quantize="dynamic"`:
            patterns of the layers left in float32
            (`export_generator(keep_float=...)`); default
            `DEFAULT_TFLITE_KEEP_FLOAT`.
        seed: int. Seed of the split, shuffling, adapter weights, dropout.
        deterministic: bool. TensorFlow op determinism (as the classifier's
            runs).
        verbose: int. Keras' output while training: 0, 1 or 2.
        base_quantization, quantize_frozen: a quantized frozen base, as
            `RunOptions` says.
        adaptive_rank, adaptive_initial_rank: AdaLoRA, as `RunOptions`
            says; its schedule spans `ceil(max_steps / eval_every) *
            eval_every` steps, all trained (early stopping is off:
            `runs.adapter_setup.early_stopping`).

    Example:
    ```python
    report = finetune_lm(LMFinetuneOptions(out="runs/lm", max_steps=100))
    ```
    """

    EXPORT_FORMATS = GENERATION_FORMATS
    TFLITE_QUANTIZE_MODES = TFLITE_QUANTIZE_MODES
    QUANTIZED_WHAT = " for a generator"

    # === Shared fields: the causal LM's defaults ===
    out: str = "runs/demo-lm"
    dropout: float = 0.0
    targets: tuple = ("all-linear",)
    batch_size: int = 8
    weight_decay: float = 0.0
    sequence_length: int = 128
    max_eval_examples: int | None = 200
    export: tuple = ("tflite",)
    tflite_quantize: str | None = None
    verbose: int = 2

    # === The causal LM's own fields ===
    tokenizer_file: str | None = None
    text_field: str = "text"
    max_steps: int = 60
    eval_every: int = 20
    max_validation_examples: int | None = 64
    max_new_tokens: int = 16
    samples: int = 4
    export_max_length: int = 160
    tflite_keep_float: tuple = DEFAULT_TFLITE_KEEP_FLOAT

    @property
    def training_steps(self) -> int:
        """The optimizer steps of the run: `ceil(max_steps / eval_every)`
        rounds of `eval_every` steps (early stopping may end it sooner)."""
        return math.ceil(self.max_steps / self.eval_every) * self.eval_every

    def __post_init__(self):
        check_text(self.text_field, "text_field")
        if self.tokenizer_file is not None:
            check_text(self.tokenizer_file, "tokenizer_file")
        super().__post_init__()
        for name in ("max_steps", "eval_every", "max_new_tokens", "export_max_length"):
            check_positive_int(getattr(self, name), name)
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) \
                or self.samples < 0:
            raise ValueError("samples must be an integer >= 0. Received: "
                             f"samples={self.samples!r}")
        if self.max_validation_examples is not None:
            check_positive_int(self.max_validation_examples, "max_validation_examples")
        self.set_field("tflite_keep_float", tuple(
            as_tuple(self.tflite_keep_float, "tflite_keep_float")))
        if not all(isinstance(p, str) and p for p in self.tflite_keep_float):
            raise ValueError(
                "tflite_keep_float must hold non-empty layer patterns. "
                f"Received: tflite_keep_float={list(self.tflite_keep_float)}")
