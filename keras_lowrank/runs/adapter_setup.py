"""What a run's options make of its adapters: `add_adapters`' arguments
(LoRA, a quantized base, AdaLoRA's schedule) and the callbacks `fit` needs.

Both tasks adapt their model through `adapter_arguments` and train with
`training_callbacks`, so a run's `--base-quantization` and `--adaptive-rank`
mean the same for the classifier and the causal LM.
"""

import math

import keras_lowrank as klr

# AdaLoRA's schedule as shares of the run's training steps: the initial
# budget for the first 10%, the final allocation fixed for the last 30%
# (the proportions of PEFT's AdaLoRA examples, e.g. `tinit=200`,
# `tfinal=1000` of 3000-odd steps, rounded), a new allocation every step
# between (PEFT's default `deltaT=1`).
WARMUP_SHARE = 0.1
FINAL_SHARE = 0.3
INTERVAL = 1


def adalora_schedule(options, total_steps):
    """The `klr.AdaLoRA` of a run with `options.adaptive_rank`, else None.

    Args:
        options: RunOptions.
        total_steps: int. The optimizer steps the run trains for (it trains
            them all: early stopping is off under AdaLoRA, see
            `early_stopping`).

    Returns:
        `klr.AdaLoRA(target_rank=options.adaptive_rank, total_steps=...,
        warmup_steps=floor(WARMUP_SHARE · total), final_steps=floor(
        FINAL_SHARE · total), interval=INTERVAL)`, or None.
    """
    if options.adaptive_rank is None:
        return None
    return klr.AdaLoRA(
        target_rank=options.adaptive_rank,
        total_steps=total_steps,
        warmup_steps=math.floor(WARMUP_SHARE * total_steps),
        final_steps=math.floor(FINAL_SHARE * total_steps),
        interval=INTERVAL,
    )


def adapter_arguments(options, total_steps, calibration=None) -> dict:
    """The keyword arguments of the run's `klr.add_adapters` call.

    Args:
        options: RunOptions.
        total_steps: int. The optimizer steps the run trains for (AdaLoRA's
            schedule spans them).
        calibration: the model's inputs for the first training examples,
            at least `options.base_calibration` of them (taken under an
            int4 base with `base_calibration` > 0), or None.
    """
    arguments = {
        "rank": options.rank,
        "alpha": options.alpha,
        "dropout": options.dropout,
        "targets": options.targets_for_config,
        "adaptive": adalora_schedule(options, total_steps),
    }
    if options.base_quantization is not None:
        arguments["base_quantization"] = options.base_quantization
        arguments["quantize_frozen"] = options.quantize_frozen
    if calibration_examples(options):
        if calibration is None:
            raise ValueError(
                f"base_calibration={options.base_calibration} fits the int4 "
                "base to training examples, but none were given to "
                "adapter_arguments.")
        arguments["calibration"] = {
            key: value[:options.base_calibration] for key, value in calibration.items()}
    return arguments


def calibration_examples(options) -> int:
    """How many training examples the run fits its int4 base to (GPTQ)."""
    return options.base_calibration or 0


def training_callbacks(options) -> list:
    """The callbacks the run's adapters need in `fit`: `AdaLoRACallback`
    under `options.adaptive_rank`, none otherwise."""
    return [klr.AdaLoRACallback()] if options.adaptive_rank is not None else []


def early_stopping(options) -> bool:
    """Whether the run stops early and keeps its best evaluation's weights.

    Not under AdaLoRA: its budget falls over every step of the schedule, so
    a run stopped early would keep more than the target budget, and the
    best evaluation's weights would bring back that evaluation's masks.
    """
    return options.adaptive_rank is None


def adapters_note(options):
    """`LoRA rank 8`, `AdaLoRA rank 12 -> 8`, with `, int4 base`."""
    adapters = (f"LoRA rank {options.rank}" if options.adaptive_rank is None else
                f"AdaLoRA rank {options.rank} -> {options.adaptive_rank}")
    if options.base_quantization is None:
        return adapters
    fitted = (f", GPTQ on {options.base_calibration} examples"
              if calibration_examples(options) else "")
    return (f"{adapters}, {options.base_quantization} base "
            f"({options.quantize_frozen}{fitted})")
