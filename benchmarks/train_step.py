"""Child: training-step time and peak RSS of one Keras configuration.

A compiled `train_on_batch` on the fixed batch, the same optimizer, loss
and compile options for every configuration; `warmup_steps` untimed steps
(the first traces the graph), then `steps` timed ones.
"""

from benchmarks import child
from benchmarks import keras_setup


def measure(settings, config, work):
    import keras

    import keras_lowrank as klr

    keras.utils.set_random_seed(settings.seed)
    rows = settings.batch_size
    x, y = keras_setup.as_tensors(*keras_setup.load_batch(work, rows))
    model = keras_setup.build_classifier(config, settings.rank)
    keras_setup.compile_for_training(
        model, settings.lora_learning_rate, settings.xla
    )
    rss_before = child.current_rss_bytes()
    peak_before = child.peak_rss_bytes()
    for _ in range(settings.warmup_steps):
        model.train_on_batch(x, y)
    losses = []
    # train_on_batch returns numpy: each timed step has finished.
    seconds, cpu = child.time_steps(
        lambda: losses.append(model.train_on_batch(x, y)), settings.steps)
    loss = losses[-1]
    return {
        "config": config,
        "trainable_params": keras_setup.trainable_count(model),
        "total_params": int(model.count_params()),
        "weight_bytes": klr.weight_bytes(model),
        "step": child.summarize(seconds),
        "step_seconds": seconds,
        "step_cpu_seconds": cpu,
        "final_loss": float(loss),
        "rss_after_load_bytes": rss_before,
        "peak_rss_after_load_bytes": peak_before,
        "batch_shape": [rows, int(x["token_ids"].shape[1])],
        "xla": settings.xla,
    }


if __name__ == "__main__":
    child.main(measure)
