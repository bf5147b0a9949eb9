"""The real SmolLM2-135M-Instruct (large): two LoRA steps on the MR task
through the whole pipeline, export left out (the generation tests export
SmolLM2). Two steps already take the held-out loss from 1.40 to about 0.3;
most of the test's time is tracing the 30-block model for generation,
evaluation and training, once each."""

import os

import pytest

from keras_lowrank.lm_finetune import LMFinetuneOptions
from keras_lowrank.lm_finetune import finetune_lm

pytestmark = pytest.mark.large

# Rank 8 on the 7 linear layers of 30 blocks (hidden 576, 9 query and 3
# key/value heads of 64, feed-forward 1536): 8 x (in + out) each.
SMOLLM2_LORA_PARAMS = 30 * 8 * (2 * 1152 + 2 * 768 + 3 * 2112)
# 134,515,008 of the model, its output head tied to the token embedding,
# and the adapters.
SMOLLM2_TOTAL_PARAMS = 134_515_008 + SMOLLM2_LORA_PARAMS


def test_a_few_lora_steps_on_mr(tmp_path):
    lines = []
    options = LMFinetuneOptions(
        out=str(tmp_path / "run"), max_train_examples=8, max_eval_examples=2,
        max_validation_examples=2, max_steps=2, eval_every=2, batch_size=4,
        learning_rate=1e-3, export=(), samples=1, max_new_tokens=4, verbose=0)
    report = finetune_lm(options, log=lines.append)
    assert report["trainable_params"] == SMOLLM2_LORA_PARAMS == 2_442_240
    assert report["total_params"] == SMOLLM2_TOTAL_PARAMS
    assert report["adapter_bytes"] == os.path.getsize(
        os.path.join(options.out, "adapters.safetensors"))
    assert report["num_examples"] == {"train": 8, "validation": 2, "test": 2}
    # The answer is one label word and <|im_end|>: 2 tokens a sentence.
    assert report["before"]["heldout_loss"]["tokens"] == 4
    assert report["heldout_loss"] < report["heldout_loss_before"]
    assert 0 <= report["test_accuracy"] <= 1
    assert report["steps_run"] == 2
