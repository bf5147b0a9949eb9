"""Child: the causal-LM LoRA training step on a float, int8 and int4 base.

SmolLM2-135M-Instruct (with `--quick` a tiny Llama 3 with a tied token
table, built from config), LoRA rank `settings.rank` on every linear layer
as `finetune --task causal-lm` adapts it, the frozen base held in float32
or in Keras' int8 / int4 form (`quantize_frozen="all"`, the tied token
table included). The three models live in one process and their compiled
`train_on_batch` steps are timed round robin (`child.time_calls`), so
their ratios hold on a shared machine; the batch is `settings.lm_batch`
rows of seeded token ids. Peak RSS per base comes from separate runs
(`examples/demo_seeds.py`, docs/quantized_base.md), not from here.
"""

import numpy as np

from benchmarks import child

BASES = (None, "int8", "int4")


def _base_model(settings):
    if settings.generation_model == "tiny":
        import keras_hub

        backbone = keras_hub.models.Llama3Backbone(
            vocabulary_size=256, num_layers=2, num_query_heads=4,
            num_key_value_heads=2, hidden_dim=64, intermediate_dim=128,
            tie_word_embeddings=True,
        )
        return keras_hub.models.Llama3CausalLM(backbone=backbone, preprocessor=None)
    from keras_lowrank.models import presets

    return presets.smollm2_causal_lm(preprocessor=None)


def measure(settings, config, work):
    import keras

    import keras_lowrank as klr

    keras.utils.set_random_seed(settings.seed)
    base = _base_model(settings)
    rows, length = settings.lm_batch
    rng = np.random.default_rng(settings.seed)
    ids = rng.integers(3, base.backbone.vocabulary_size, size=(rows, length)).astype("int32")
    x = {"token_ids": ids, "padding_mask": np.ones_like(ids, bool)}
    steps, entries = {}, {}
    for mode in BASES:
        name = mode or "float32"
        model = klr.add_adapters(base, rank=settings.rank, targets="all-linear",
                                 base_quantization=mode,
                                 quantize_frozen="all" if mode else "adapted")
        model.compile(optimizer=keras.optimizers.AdamW(settings.lora_learning_rate),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        for _ in range(settings.warmup_steps):
            model.train_on_batch(x, ids)
        steps[name] = (lambda m: lambda: m.train_on_batch(x, ids))(model)
        entries[name] = {"weight_bytes": klr.weight_bytes(model),
                         "trainable_params": klr.parameter_counts(model)[0]}
    times = child.time_calls(steps, settings.steps)
    for name, seconds in times.items():
        entries[name].update(step=child.summarize(seconds), step_seconds=seconds)
    return {"model": settings.generation_model, "batch_shape": [rows, length],
            "rank": settings.rank, "bases": entries}


if __name__ == "__main__":
    child.main(measure)
