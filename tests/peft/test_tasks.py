"""Task models: a BERT classifier (modules_to_save) and causal LMs (prefixes).

PEFT names the modules of a task model under the base model's attribute
(`bert.`, `model.`, `transformer.`) and saves a classifier head in full;
keras-hub's tasks hold the same backbone and a `logits` head.
"""

import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.peft import load_peft_base_model
from tests.peft import helpers as h

TOLERANCE = 1e-4


def _classifier_adapter(checkpoint, folder):
    hf = h.hf_model("bert", checkpoint, task=True, num_labels=3)
    peft_model = h.peft.get_peft_model(hf, h.peft.LoraConfig(
        task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"]))
    h.randomize_lora(peft_model, seed=11)
    head = peft_model.base_model.model.classifier.modules_to_save["default"]
    h.torch.manual_seed(3)
    with h.torch.no_grad():
        head.weight.normal_(0, 0.5)
        head.bias.normal_(0, 0.5)
    peft_model.save_pretrained(folder)
    return peft_model


def test_bert_classifier_head_round_trip(checkpoints, tmp_path):
    peft_model = _classifier_adapter(checkpoints["bert"], tmp_path / "in")
    ids = h.token_ids(batch=3)
    expected = h.hf_outputs(peft_model, ids)

    base = load_peft_base_model(checkpoints["bert"], tmp_path / "in", preprocessor=False)
    assert type(base).__name__ == "BertTextClassifier"
    adapted = klr.load_peft_adapters(base, tmp_path / "in")

    assert h.max_diff(h.keras_outputs("bert", adapted, ids), expected) < TOLERANCE
    trainable = {w.path.split("/")[0] for w in adapted.trainable_weights}
    assert "logits" in trainable  # the saved head stays trainable

    config = klr.save_peft_adapters(adapted, tmp_path / "out")
    assert config.task_type == "SEQ_CLS"
    assert config.modules_to_save == ("classifier",)
    again = h.peft.PeftModel.from_pretrained(
        h.hf_model("bert", checkpoints["bert"], task=True, num_labels=3), tmp_path / "out").eval()
    assert h.max_diff(h.hf_outputs(again, ids), expected) < TOLERANCE


def test_keras_classifier_trained_here_loads_in_peft(checkpoints, tmp_path):
    import keras

    import keras_hub

    classifier = keras_hub.models.BertTextClassifier(
        h.keras_backbone(checkpoints["bert"]), num_classes=2, preprocessor=None)
    model = klr.add_adapters(classifier, rank=4, alpha=8, targets=["query", "value"])
    model.compile(optimizer=keras.optimizers.Adam(5e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ids = h.token_ids(batch=8, seed=4)
    model.fit(h.keras_inputs("bert", ids), np.arange(8) % 2, epochs=3, verbose=0)
    factors = [np.abs(np.asarray(w)).max() for w in model.trainable_weights if "lora_b" in w.path]
    assert min(factors) > 0  # trained: B moved off zero

    klr.save_peft_adapters(model, tmp_path / "out")

    hf = h.hf_model("bert", checkpoints["bert"], task=True, num_labels=2)
    peft_model = h.peft.PeftModel.from_pretrained(hf, tmp_path / "out").eval()
    assert h.max_diff(h.hf_outputs(peft_model, ids), h.keras_outputs("bert", model, ids)) < TOLERANCE


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_causal_lm_logits(family, checkpoints, tmp_path):
    hf = h.hf_model(family, checkpoints[family], task=True)
    peft_model = h.peft_adapter(
        family, hf, tmp_path / "in", seed=5, task_type="CAUSAL_LM", r=4,
        lora_alpha=16, target_modules=h.ALL_LINEAR[family][:2],
    )
    ids = h.token_ids(seed=6)
    base = load_peft_base_model(checkpoints[family], tmp_path / "in", preprocessor=False)
    assert type(base).__name__ == {"llama": "Llama3CausalLM", "gpt2": "GPT2CausalLM"}[family]
    assert h.max_diff(h.keras_outputs(family, base, ids), h.hf_outputs(hf, ids)) < 1e-5

    adapted = klr.load_peft_adapters(base, tmp_path / "in")

    expected = h.hf_outputs(peft_model, ids)
    assert h.max_diff(h.keras_outputs(family, adapted, ids), expected) < TOLERANCE
    config = klr.save_peft_adapters(adapted, tmp_path / "out")
    assert config.task_type == "CAUSAL_LM"
    again = h.peft.PeftModel.from_pretrained(
        h.hf_model(family, checkpoints[family], task=True), tmp_path / "out").eval()
    assert h.max_diff(h.hf_outputs(again, ids), expected) < TOLERANCE
