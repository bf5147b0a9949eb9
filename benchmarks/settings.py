"""`Settings`: every knob of a bench run, in one place, passed to children."""

import dataclasses
import json

# The four training configurations, in table order.
KERAS_CONFIGS = ("full", "klr_lora", "keras_lora")
PEFT_CONFIG = "peft_lora"
LABELS = {
    "full": "(a) full fine-tuning",
    "klr_lora": "(b) keras_lowrank LoRA",
    "keras_lora": "(c) keras-hub enable_lora",
    PEFT_CONFIG: "(d) PEFT LoRA (PyTorch)",
}
# Exports of the merged model (`benchmarks/exports.py` names each's format,
# quantize mode and metadata), in table order. `tflite_int16x8` is left
# out: LiteRT runs it on reference kernels, 18x slower than float32, and
# its export alone took 3.5 minutes of the section's 9.
EXPORTS = ("tflite", "tflite_dynamic", "tflite_int8", "tflite_text_classifier",
           "onnx", "onnx_int8")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What one bench run measures, and how long it spends on it.

    Args:
        batch_size: int. Rows of the training-step and latency batch.
        sequence_length: int. Tokens per row of that batch.
        warmup_steps: int. Untimed training steps (the first one traces).
        steps: int. Timed training steps.
        rank: int. LoRA rank of (b), (c) and (d).
        xla: bool. Compile Keras training steps with XLA (`jit_compile`).
        epochs: int. Epochs of the accuracy runs.
        train_sequence_length: int. Tokens per row in the accuracy runs.
        train_examples: int or None. Train rows used (None: the whole split).
        test_examples: int or None. Test rows used (None: the whole split).
        lora_learning_rate: float. AdamW learning rate of (b) and (c).
        full_learning_rate: float. AdamW learning rate of (a).
        latency_repeats: int. Timed calls per model at batch 1.
        latency_repeats_batch: int. Timed calls per model at `batch_size`.
        profile_steps: int. Timed repeats of each profiled function.
        exports: tuple of str. Names of `benchmarks.exports.FORMATS`
            (`EXPORTS` by default; `tflite_int16x8` too if asked for).
        export_eval_examples: int. MR test sentences each export is judged
            on, in its runtime and in Keras (the classifier takes them at
            `train_sequence_length` tokens).
        export_calibration_examples: int. MR training sentences the
            calibrated modes (`int8`, `int16x8`) calibrate on.
        seed: int. Seed of data order and initializers.
        gemm_shape: tuple of 3 ints. `(m, k, n)` of the GEMM probe: a
            MiniLM feed-forward product at batch 32 x 128 tokens.
        gemm_repeats: int. Timed matmuls per dtype.
        gemm_dtypes: tuple of str. Dtypes the GEMM probe times; float32
            is the yardstick of every configuration.
        bandwidth_array_bytes: int or None. Bytes of each of the memory
            triad's three arrays (None: 4x the last-level cache, at least
            256 MiB; `benchmarks/bandwidth.py`).
        bandwidth_repeats: int. Timed triads.
        generation_model: str. `"smollm2"` or `"tiny"` (a Llama 3 from
            config): the model of the generation child.
        generation_new_tokens: int. Greedy tokens per prompt there.
        generation_rounds: int. Interleaved timed rounds over the prompts.
        generation_quantize: tuple of str. LiteRT quantize modes timed
            beside float32 (`"dynamic"`).
        lm_batch: tuple of 2 ints. `(rows, tokens)` of the causal-LM step
            on a quantized base (`quantized_lm_step.py`; the model is
            `generation_model`).
    """

    batch_size: int = 32
    sequence_length: int = 128
    warmup_steps: int = 3
    steps: int = 15
    rank: int = 8
    xla: bool = False
    epochs: int = 2
    train_sequence_length: int = 64
    train_examples: int | None = None
    test_examples: int | None = None
    lora_learning_rate: float = 1e-3
    full_learning_rate: float = 5e-5
    latency_repeats: int = 100
    latency_repeats_batch: int = 20
    profile_steps: int = 6
    exports: tuple = EXPORTS
    export_eval_examples: int = 200
    export_calibration_examples: int = 256
    seed: int = 0
    gemm_shape: tuple = (4096, 384, 1536)
    gemm_repeats: int = 10
    gemm_dtypes: tuple = ("float32", "bfloat16")
    bandwidth_array_bytes: int | None = None
    bandwidth_repeats: int = 10
    generation_model: str = "smollm2"
    generation_new_tokens: int = 32
    generation_rounds: int = 3
    generation_quantize: tuple = ("dynamic",)
    lm_batch: tuple = (8, 64)

    @classmethod
    def quick(cls, **overrides):
        """Small enough for a smoke test: every code path, few seconds each."""
        small = dict(
            batch_size=8, sequence_length=32, warmup_steps=1, steps=3,
            epochs=1, train_sequence_length=32, train_examples=64,
            test_examples=64, latency_repeats=5, latency_repeats_batch=3,
            profile_steps=2, exports=("tflite_int8", "tflite_text_classifier"),
            export_eval_examples=32, export_calibration_examples=16, gemm_repeats=3,
            bandwidth_array_bytes=32 * 2**20, bandwidth_repeats=3,
            generation_model="tiny", generation_new_tokens=8,
            generation_rounds=1, lm_batch=(2, 16),
        )
        return cls(**{**small, **overrides})

    def to_json(self):
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text):
        values = json.loads(text)
        for name in ("exports", "gemm_shape", "gemm_dtypes",
                     "generation_quantize", "lm_batch"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)
