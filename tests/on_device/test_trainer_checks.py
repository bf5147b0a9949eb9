import numpy as np
import pytest

from keras_lowrank.on_device.trainer import check_batch
from keras_lowrank.on_device.trainer import check_factors
from keras_lowrank.on_device.trainer import check_inputs

B, T = 2, 4
CLASSIFIER = {
    "task": "classifier", "batch_size": B, "sequence_length": T, "num_classes": 3,
    "inputs": {"token_ids": {"shape": [B, T], "dtype": "int32"},
               "padding_mask": {"shape": [B, T], "dtype": "bool"}},
    "factors": [{"key": "layer/query/lora_a", "name": "factor_0", "shape": [4, 2]},
                {"key": "layer/query/lora_b", "name": "factor_1", "shape": [2, 4]}],
}
CAUSAL_LM = {**CLASSIFIER, "task": "causal_lm", "vocabulary_size": 10}
del CAUSAL_LM["num_classes"]


def inputs(**change):
    return {"token_ids": np.arange(B * T).reshape(B, T), "padding_mask": np.ones((B, T), "int64"),
            **change}


def test_inputs_are_cast_losslessly():
    checked, extra = check_batch(CLASSIFIER, inputs(), np.array([0, 2], "int64"))
    assert checked["token_ids"].dtype == np.int32 and checked["padding_mask"].dtype == bool
    assert checked["token_ids"].tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert extra["labels"].dtype == np.int32 and extra["labels"].tolist() == [0, 2]
    _, extra = check_batch(CAUSAL_LM, inputs(), np.full((B, T), 9), np.ones((B, T), "float64"))
    assert extra["loss_mask"].dtype == np.float32 and sorted(extra) == ["labels", "loss_mask"]


def test_other_batch_size_says_the_artifacts_and_padding():
    with pytest.raises(ValueError, match=r"input 'token_ids' has 3 rows; this artifact takes "
                       r"exactly batch_size=2 rows per call .*Pad a short batch"):
        check_inputs(CLASSIFIER, inputs(token_ids=np.zeros((3, T), "int32")))
    with pytest.raises(ValueError, match=r"input 'padding_mask' must have shape \[2, 4\]. "
                       r"Received: shape \[2, 5\]"):
        check_inputs(CLASSIFIER, inputs(padding_mask=np.ones((B, 5), bool)))


def test_missing_and_unknown_inputs():
    with pytest.raises(ValueError, match=r"missing \['padding_mask'\], unknown \['segment_ids'\]"):
        check_inputs(CLASSIFIER, {"token_ids": np.zeros((B, T)), "segment_ids": np.zeros((B, T))})


def test_lossy_casts_are_refused():
    with pytest.raises(ValueError, match=r"labels must hold integers within int32 .*"
                       r"Received: dtype float32"):
        check_batch(CLASSIFIER, inputs(), np.array([0.0, 1.0], "float32"))
    with pytest.raises(ValueError, match=r"input 'padding_mask' must hold booleans or 0/1 "
                       r"integers .*Received: dtype int64"):
        check_inputs(CLASSIFIER, inputs(padding_mask=np.full((B, T), 2)))
    with pytest.raises(ValueError, match=r"input 'token_ids' must hold integers within int32"):
        check_inputs(CLASSIFIER, inputs(token_ids=np.full((B, T), 2**31)))


def test_labels_out_of_range():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\) \(num_classes=3\). "
                       r"Received: labels from 0 to 3"):
        check_batch(CLASSIFIER, inputs(), [0, 3])
    with pytest.raises(ValueError, match=r"\[0, 10\) \(vocabulary_size=10\). "
                       r"Received: labels from -1 to 0"):
        check_batch(CAUSAL_LM, inputs(), np.array([[-1, 0, 0, 0]] * B), np.ones((B, T)))
    with pytest.raises(ValueError, match=r"labels must have shape \[2, 4\]"):
        check_batch(CAUSAL_LM, inputs(), np.array([[0, 0, 0]] * B), np.ones((B, T)))


def test_loss_mask_only_for_causal_lm():
    with pytest.raises(ValueError, match="this one is a classifier"):
        check_batch(CLASSIFIER, inputs(), [0, 1], np.ones((B, T)))
    with pytest.raises(ValueError, match=r"takes loss_mask, float32 \[2, 4\].*"
                       r"Received: loss_mask=None"):
        check_batch(CAUSAL_LM, inputs(), np.zeros((B, T)))


def factors(**change):
    return {"layer/query/lora_a": np.ones((4, 2)), "layer/query/lora_b": np.ones((2, 4)), **change}


def test_factors_become_signature_inputs():
    checked = check_factors(CLASSIFIER, factors())
    assert sorted(checked) == ["factor_0", "factor_1"]
    assert checked["factor_1"].dtype == np.float32 and checked["factor_1"].shape == (2, 4)


def test_factor_errors_name_the_key():
    with pytest.raises(ValueError, match=r"missing \['layer/query/lora_b'\], unknown \['x'\]"):
        check_factors(CLASSIFIER, {"layer/query/lora_a": np.ones((4, 2)), "x": np.ones(1)})
    with pytest.raises(ValueError, match=r"Shape mismatch for factor 'layer/query/lora_a': "
                       r"received \(2, 4\), the artifact needs \(4, 2\)"):
        check_factors(CLASSIFIER, factors(**{"layer/query/lora_a": np.ones((2, 4))}))
    bad = np.ones((2, 4))
    bad[0, 1] = np.nan
    with pytest.raises(ValueError, match=r"Factor 'layer/query/lora_b' holds 1 NaN or Inf"):
        check_factors(CLASSIFIER, factors(**{"layer/query/lora_b": bad}))
