"""Child: inference latency of the base, adapted and merged classifier.

All three run through the same call, `tf.function(model(x, training=False))`
without XLA, at batch 1 and `batch_size`, timed round robin (see
`child.time_calls`). The adapters get random `B` factors first, so the
merged model really differs from the base one.
"""

import numpy as np

from benchmarks import child
from benchmarks import keras_setup


def merged_with_random_adapters(model, seed):
    import keras_lowrank as klr
    from keras_lowrank.adapters.adapted_model import adapters

    rng = np.random.default_rng(seed)
    for layer in adapters(model).values():
        layer.lora_b.assign(
            rng.normal(0, 0.02, layer.lora_b.shape).astype("float32")
        )
    return klr.merge_adapters(model)


def measure(settings, config, work):
    import keras
    import tensorflow as tf

    import keras_lowrank as klr

    keras.utils.set_random_seed(settings.seed)
    base = keras_setup.build_classifier("base", settings.rank)
    adapted = klr.add_adapters(base, rank=settings.rank)
    merged = merged_with_random_adapters(adapted, settings.seed)
    models = {"base": base, "adapted": adapted, "merged": merged}
    calls = {
        name: tf.function(lambda x, m=model: m(x, training=False), jit_compile=False)
        for name, model in models.items()
    }
    inputs, _ = keras_setup.load_batch(work)
    result = {"merged_vs_adapted_max_abs_diff": None, "batches": {}}
    for rows, repeats in ((1, settings.latency_repeats),
                          (settings.batch_size, settings.latency_repeats_batch)):
        x = keras_setup.as_tensors({k: v[:rows] for k, v in inputs.items()})
        outputs = {name: np.asarray(call(x)) for name, call in calls.items()}
        for call in calls.values():  # warm-up beyond the traced call
            call(x)
        times = child.time_calls(
            {name: (lambda c=call: c(x).numpy()) for name, call in calls.items()},
            repeats,
        )
        result["batches"][str(rows)] = {
            name: child.summarize(seconds) for name, seconds in times.items()
        }
        diff = float(np.max(np.abs(outputs["merged"] - outputs["adapted"])))
        result["merged_vs_adapted_max_abs_diff"] = max(
            diff, result["merged_vs_adapted_max_abs_diff"] or 0.0
        )
    result["sequence_length"] = int(inputs["token_ids"].shape[1])
    result["method"] = "tf.function(model(x, training=False)), no XLA"
    return result


if __name__ == "__main__":
    child.main(measure)
