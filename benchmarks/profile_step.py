"""Child: where the time of one keras_lowrank LoRA training step goes.

1. Phases, timed round robin on the fixed batch: forward (training mode,
   loss included), forward + backward (`GradientTape`), and the whole
   compiled `train_on_batch` (the rest is the optimizer and bookkeeping);
   the same for a `floor` model: no adapters, every block frozen, only the
   embedding layer norm and the head trainable, so the backward pass still
   crosses all six blocks. `LoRA - floor` is what the adapters cost. And
   the whole step of the LoRA model with every Dropout layer at rate 0
   (`no_dropout_step`): `LoRA - no dropout` is what dropout costs (its
   random numbers, masks and scaling, forward and backward).
2. A `tf.profiler` trace of LoRA steps, summed by op type, phase and layer
   (`trace_summary`).
3. The adapter micro-benchmark (`adapter_math`) and the analytic FLOPs.
"""

import os
import shutil

from benchmarks import adapter_math
from benchmarks import child
from benchmarks import flops
from benchmarks import keras_setup
from benchmarks import trace_summary


def step_flops(batch, seq, rank):
    """The profile's FLOP figures of a LoRA and a full step (`flops`)."""
    part = flops.forward_parts(batch, seq, rank)
    full = flops.step_flops("full", batch, seq, rank)
    lora = flops.step_flops("klr_lora", batch, seq, rank)
    return {
        "forward": flops.forward_flops(batch, seq),
        "full_step": full,
        "lora_step": lora,
        "adapter_share_of_lora_step": 3 * part["adapters"] / lora,
        "attention_share_of_lora_step": 3 * part["attention"] / lora,
        "lora_vs_full": lora / full,
    }


def _floor_model(rank):
    model = keras_setup.build_classifier("base", rank)
    for layer in model.backbone.layers:
        layer.trainable = layer.name == "embeddings_layer_norm"
    return model


def _no_dropout_model(rank):
    import keras

    model = keras_setup.build_classifier("klr_lora", rank)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    return model


def _phase_functions(model, x, y, xla):
    import keras
    import tensorflow as tf

    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(jit_compile=xla)
    def forward():
        return loss_fn(y, model(x, training=True))

    @tf.function(jit_compile=xla)
    def forward_backward():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return tape.gradient(loss, model.trainable_variables)

    return {
        "forward": lambda: forward().numpy(),
        "forward_backward": lambda: [g.numpy() for g in forward_backward()],
        "step": lambda: model.train_on_batch(x, y),
    }


def measure(settings, config, work):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(settings.seed)
    x, y = keras_setup.as_tensors(*keras_setup.load_batch(work, settings.batch_size))
    models = {
        "lora": keras_setup.build_classifier("klr_lora", settings.rank),
        "floor": _floor_model(settings.rank),
    }
    functions = {}
    for name, model in models.items():
        keras_setup.compile_for_training(model, settings.lora_learning_rate, settings.xla)
        for phase, function in _phase_functions(model, x, y, settings.xla).items():
            functions[f"{name}_{phase}"] = function
    no_dropout = _no_dropout_model(settings.rank)
    keras_setup.compile_for_training(no_dropout, settings.lora_learning_rate, settings.xla)
    functions["no_dropout_step"] = lambda: no_dropout.train_on_batch(x, y)
    for function in functions.values():  # trace and warm up
        function()
        function()
    times = child.time_calls(functions, settings.profile_steps)
    phases_ms = {k: child.summarize(v)["median_s"] * 1e3 for k, v in times.items()}

    trace_dir = os.path.join(work, "trace")
    shutil.rmtree(trace_dir, ignore_errors=True)
    traced_steps = 2
    tf.profiler.experimental.start(trace_dir)
    for _ in range(traced_steps):
        models["lora"].train_on_batch(x, y)
    tf.profiler.experimental.stop()
    trace = trace_summary.summarize(trace_dir, traced_steps)
    shutil.rmtree(trace_dir, ignore_errors=True)

    return {
        "phases_ms": phases_ms,
        "trainable_params": {k: keras_setup.trainable_count(m) for k, m in models.items()},
        "trace": trace,
        "adapter_microbench": adapter_math.microbench(
            settings.batch_size, settings.sequence_length, settings.rank,
            max(3 * settings.profile_steps, 5),
        ),
        "flops": step_flops(settings.batch_size, settings.sequence_length, settings.rank),
    }


if __name__ == "__main__":
    child.main(measure)
