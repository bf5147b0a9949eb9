"""Child: the LoRA training step on a float, int8 and int4 base, one process.

`--config classifier`: MiniLM as `make demo` adapts it (LoRA on query and
value), the bench's batch. `--config causal_lm`: SmolLM2-135M-Instruct
(with `--quick` a tiny Llama 3 with a tied token table, built from config)
with LoRA on every linear layer, as `finetune --task causal-lm` adapts it,
on `settings.lm_batch` rows of seeded token ids.

The frozen base is held in float32, or in Keras' int8 / int4 form with
every frozen Dense, EinsumDense and Embedding quantized
(`quantize_frozen="all"`; a tied token table too). The three models live
in one process and their compiled `train_on_batch` steps are timed round
robin (`child.time_calls`), so their ratios hold on a shared machine (in
separate processes, the classifier's int8 step read 1.3-1.5x the float
one on a loaded machine; round robin, 1.0-1.1x). Peak RSS per base needs
a process each: `examples/demo_seeds.py --variant` runs give it
(docs/quantized_base.md).
"""

import numpy as np

from benchmarks import child
from benchmarks import keras_setup

BASES = (None, "int8", "int4")


def _classifier(settings, work):
    base = keras_setup.build_classifier("base", settings.rank)
    x, y = keras_setup.load_batch(work, settings.batch_size)
    return base, keras_setup.as_tensors(x, y), {}


def _causal_lm(settings, work):
    if settings.generation_model == "tiny":
        import keras_hub

        backbone = keras_hub.models.Llama3Backbone(
            vocabulary_size=256, num_layers=2, num_query_heads=4,
            num_key_value_heads=2, hidden_dim=64, intermediate_dim=128,
            tie_word_embeddings=True,
        )
        base = keras_hub.models.Llama3CausalLM(backbone=backbone, preprocessor=None)
    else:
        from keras_lowrank.models import presets

        base = presets.smollm2_causal_lm(preprocessor=None)
    rows, length = settings.lm_batch
    rng = np.random.default_rng(settings.seed)
    ids = rng.integers(3, base.backbone.vocabulary_size, size=(rows, length)).astype("int32")
    batch = ({"token_ids": ids, "padding_mask": np.ones_like(ids, bool)}, ids)
    return base, batch, {"targets": "all-linear"}


MODELS = {"classifier": _classifier, "causal_lm": _causal_lm}


def measure(settings, config, work):
    import keras

    import keras_lowrank as klr

    keras.utils.set_random_seed(settings.seed)
    base, (x, y), options = MODELS[config](settings, work)
    steps, entries = {}, {}
    for mode in BASES:
        name = mode or "float32"
        model = klr.add_adapters(base, rank=settings.rank, base_quantization=mode,
                                 quantize_frozen="all" if mode else "adapted", **options)
        keras_setup.compile_for_training(model, settings.lora_learning_rate, settings.xla)
        for _ in range(settings.warmup_steps):
            model.train_on_batch(x, y)
        steps[name] = (lambda m: lambda: m.train_on_batch(x, y))(model)
        entries[name] = {"weight_bytes": klr.weight_bytes(model),
                         "trainable_params": klr.parameter_counts(model)[0]}
    for name, seconds in child.time_calls(steps, settings.steps).items():
        entries[name].update(step=child.summarize(seconds), step_seconds=seconds)
    model_name = ("all-MiniLM-L6-v2" if config == "classifier"
                  else settings.generation_model)
    return {"model": model_name, "batch_shape": [int(n) for n in x["token_ids"].shape],
            "rank": settings.rank, "targets": options.get("targets", "query, value"),
            "bases": entries}


if __name__ == "__main__":
    child.main(measure)
