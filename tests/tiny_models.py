"""Tiny keras-hub and Keras models built from config, for fast tests."""

import keras
import keras_hub
import numpy as np

VOCAB = 64
SEQ = 12


def bert_classifier(num_classes=2):
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=SEQ,
    )
    return keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=num_classes, preprocessor=None
    )


def bert_classifier_with_preprocessor():
    """A tiny BERT classifier that takes raw strings (WordPiece tokenizer)."""
    words = ["a", "great", "awful", "movie", "plot", "the", "was", "good"]
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        keras_hub.models.BertTokenizer(vocabulary=vocabulary), sequence_length=SEQ
    )
    model = bert_classifier()
    return keras_hub.models.BertTextClassifier(
        backbone=model.backbone, num_classes=2, preprocessor=preprocessor
    )


TEXTS = ["a great movie", "the plot was awful", "good"]


def bert_inputs(batch=3, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, SEQ), "int32")
    mask[:, SEQ - 3 :] = 0
    return {
        "token_ids": rng.integers(1, VOCAB, size=(batch, SEQ)).astype("int32") * mask,
        "segment_ids": np.zeros((batch, SEQ), "int32"),
        "padding_mask": mask,
    }


def gpt2_causal_lm():
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=SEQ,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def llama_causal_lm():
    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=VOCAB, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=16, intermediate_dim=32,
    )
    return keras_hub.models.LlamaCausalLM(backbone=backbone, preprocessor=None)


def lm_inputs(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.zeros((batch, SEQ), "bool")
    mask[:, :4] = True
    return {
        "token_ids": (rng.integers(1, VOCAB, size=(batch, SEQ)) * mask).astype("int32"),
        "padding_mask": mask,
    }


def functional_with_attention():
    inputs = keras.Input((5, 16))
    x = keras.layers.Dense(16, activation="relu", name="embed")(inputs)
    x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8, name="attention")(x, x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    return keras.Model(inputs, outputs, name="functional")


def sequential_mlp():
    return keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="relu", name="hidden"),
         keras.layers.Dense(4, name="out")],
        name="mlp",
    )


def weights_of(model):
    return [w.numpy().copy() for w in model.weights]


def flags_of(model):
    from keras_lowrank.surgery.layer_paths import layer_paths

    return {p: l.trainable for p, l in layer_paths(model).items()}


def randomize_adapter(model, name, seed, scale=0.3):
    """Random non-zero weights for the named adapter `name` of every layer."""
    import keras_lowrank as klr
    from keras_lowrank.surgery.layer_paths import layer_paths

    rng = np.random.default_rng(seed)
    for layer in layer_paths(model).values():
        if isinstance(layer, klr.layers.LoRAAdapter) and name in layer.adapter_names:
            for weight in layer.adapter_weights(name).values():
                weight.assign(rng.normal(size=weight.shape).astype("float32") * scale)
    return model


def random_factors(model, seed, spread=0.5, factors=("lora_b",)):
    """`model`'s LoRA weights whose path holds one of `factors` drawn from
    N(0, spread): `B` away from zero, so that the adapter changes the
    outputs (and A's gradients are not zero). Returns `model`."""
    rng = np.random.default_rng(seed)
    for variable in model.variables:
        if any(factor in variable.path for factor in factors):
            variable.assign(rng.normal(0, spread, variable.shape).astype("float32"))
    return model
