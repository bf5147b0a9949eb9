"""The real all-MiniLM-L6-v2: adapters made and saved by PEFT, loaded here.

HF's `BertModel` runs the tanh GELU that keras-hub's BERT uses
(`hidden_act="gelu_pytorch_tanh"`), so the base models agree within 1e-4
before any adapter is involved. (Export against PEFT's merged model is
checked on tiny models in `test_export.py`, to keep these few seconds.)
"""

import numpy as np
import pytest

import keras_lowrank as klr
from tests.peft import helpers as h

pytestmark = pytest.mark.large
SEQ = 16


@pytest.fixture(scope="module")
def minilm():
    import keras_hub

    folder = klr.presets.minilm_path()
    hf = h.transformers.BertModel.from_pretrained(folder, hidden_act="gelu_pytorch_tanh").eval()
    backbone = keras_hub.models.BertBackbone.from_preset(folder)
    return folder, hf, backbone


def _inputs(seed=0, batch=2):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 30000, size=(batch, SEQ)).astype("int32")
    ids[:, 0] = 101  # [CLS]
    mask = np.ones_like(ids)
    mask[1, SEQ - 5:] = 0  # one padded sequence
    return ids, mask


def _hf(model, ids, mask):
    with h.torch.no_grad():
        out = model(input_ids=h.torch.tensor(ids, dtype=h.torch.long),
                    attention_mask=h.torch.tensor(mask))
    return out.last_hidden_state.numpy(), out.pooler_output.numpy()


def _keras(model, ids, mask):
    out = model({"token_ids": ids, "padding_mask": mask, "segment_ids": np.zeros_like(ids)})
    return np.asarray(out["sequence_output"]), np.asarray(out["pooled_output"])


def _diff(ours, theirs, mask):
    keep = mask.astype(bool)  # padded positions carry no meaning
    return max(h.max_diff(ours[0][keep], theirs[0][keep]), h.max_diff(ours[1], theirs[1]))


@pytest.mark.parametrize("config", [
    dict(r=8, lora_alpha=16, target_modules=["query", "value"]),
    dict(r=8, lora_alpha=16, target_modules=["query", "key", "value", "dense"],
         rank_pattern={"intermediate.dense": 4, r"layer\.5\.output\.dense": 2},
         alpha_pattern={"key": 4}),
], ids=["query_value", "all_linear_rank_pattern"])
def test_peft_adapter_on_minilm(config, minilm, tmp_path):
    _, hf, backbone = minilm
    ids, mask = _inputs()
    assert _diff(_keras(backbone, ids, mask), _hf(hf, ids, mask), mask) < 1e-4  # bases
    peft_model = h.peft_adapter("bert", hf, tmp_path, seed=1, **config)
    expected = _hf(peft_model, ids, mask)
    assert _diff(expected, _hf(hf, ids, mask), mask) > 0.05

    adapted = klr.load_peft_adapters(backbone, tmp_path)

    assert _diff(_keras(adapted, ids, mask), expected, mask) < 1e-4

