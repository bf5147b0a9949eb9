"""An int4 base fitted to calibration inputs (GPTQ): the rounding itself,
Keras' storage, `add_adapters(calibration=...)` and its refusals."""

import keras
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank._compat import keras as klr_compat
from keras_lowrank.adapters.calibration import input_hessians
from keras_lowrank.layers.gptq import gptq_int4
from keras_lowrank.surgery.layer_paths import layer_paths
from tests import tiny_models


def _dequantized(values, scale, zero, block_size):
    groups = np.arange(len(values)) // block_size
    return (values.astype("float32") - zero[groups]) * scale[groups]


def _correlated(rows, features, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, features)) @ rng.normal(size=(features, features))


@pytest.mark.parametrize("rows", [96, 100])  # 100: Keras pads the last group
def test_a_diagonal_hessian_gives_keras_round_to_nearest(rows):
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(rows, 24)).astype("float32")
    hessian = np.diag(rng.uniform(0.5, 2.0, size=rows)).astype("float32")
    values, scale, zero = gptq_int4(kernel, hessian, 32)
    expected = keras.quantizers.abs_max_quantize_grouped_with_zero_point(
        kernel, block_size=32, to_numpy=True)
    for ours, keras_own in zip((values, scale, zero), expected):
        keras_own = np.asarray(keras_own)
        assert ours.dtype == keras_own.dtype and ours.shape == keras_own.shape
        assert np.array_equal(ours, keras_own)


def test_gptq_lowers_the_output_error_on_correlated_inputs():
    inputs = _correlated(512, 64, seed=1)
    kernel = np.random.default_rng(2).normal(size=(64, 32)).astype("float32")
    nearest = [np.asarray(v) for v in keras.quantizers.abs_max_quantize_grouped_with_zero_point(
        kernel, block_size=16, to_numpy=True)]
    values, scale, zero = gptq_int4(kernel, (inputs.T @ inputs).astype("float32"), 16)
    assert values.min() >= -8 and values.max() <= 7

    def output_error(quantized):
        return np.square(inputs @ (kernel - _dequantized(*quantized, 16))).mean()

    # Measured: 0.44x the round-to-nearest error.
    assert output_error((values, scale, zero)) < 0.55 * output_error(nearest)


@pytest.fixture(scope="module")
def llama():
    keras.utils.set_random_seed(0)  # module fixtures come before the per-test seed
    model = tiny_models.llama_causal_lm()
    rng = np.random.default_rng(3)
    mask = np.ones((128, tiny_models.SEQ), bool)
    mask[::2, tiny_models.SEQ // 2:] = False  # padded rows: left out of XᵀX
    calibration = {
        "token_ids": (rng.integers(1, tiny_models.VOCAB, size=mask.shape) * mask).astype("int32"),
        "padding_mask": mask,
    }
    return model, calibration


def _quantized(model):
    """`{path: quantized layer}`, the adapters' wrapped layers included."""
    found = {}
    for path, layer in layer_paths(model).items():
        layer = getattr(layer, "layer", layer)
        if getattr(layer, "quantization_mode", None):
            found[path] = layer
    return found


def _logits_error(model, reference, inputs):
    """Mean absolute difference of the logits at the real positions."""
    mask = inputs["padding_mask"]
    return float(np.abs(np.asarray(model(inputs))[mask] - reference[mask]).mean())


def test_a_calibrated_int4_base_is_keras_int4_and_closer_to_the_float_model(llama):
    model, calibration = llama
    weights = tiny_models.weights_of(model)
    options = dict(rank=2, targets="all-linear", base_quantization="int4",
                   quantize_frozen="all")
    nearest = klr.add_adapters(model, **options)
    fitted = klr.add_adapters(model, **options, calibration=calibration)
    # The user's model is untouched, and no layer keeps the recording call.
    assert all(np.array_equal(a, b) for a, b in zip(weights, tiny_models.weights_of(model)))
    assert not any("call" in vars(layer) for layer in layer_paths(model).values())
    # The same Keras int4 storage: variables, shapes, dtypes and policies.
    assert ([(w.path, w.shape, w.dtype) for w in fitted.weights]
            == [(w.path, w.shape, w.dtype) for w in nearest.weights])
    kinds = {path: layer.dtype_policy.name for path, layer in _quantized(fitted).items()}
    assert kinds == {path: layer.dtype_policy.name
                     for path, layer in _quantized(nearest).items()}
    # 7 projections a block in int4, groups of 64 (the untied table stays float).
    assert list(kinds.values()) == ["int4/64_from_float32"] * 14
    # Every int4 kernel moved: GPTQ rounded it, not to nearest.
    ours = _quantized(fitted)
    for path, layer in _quantized(nearest).items():
        if layer.quantization_mode == "int4":
            assert not np.array_equal(klr_compat.dequantized_kernel(layer),
                                      klr_compat.dequantized_kernel(ours[path])), path
    # Closer to the float model, on the calibration inputs (measured: 0.84x
    # the round-to-nearest error) and on others (0.89x; a tiny random model
    # has 16 inputs to spread each error over).
    held_out = tiny_models.lm_inputs(batch=8, seed=7)
    for inputs, bound in ((calibration, 0.9), (held_out, 0.95)):
        reference = np.asarray(model(inputs))
        assert (_logits_error(fitted, reference, inputs)
                < bound * _logits_error(nearest, reference, inputs))
    # Merging gives the float model the adapted one computes.
    tiny_models.randomize_adapter(fitted, "default", seed=4)
    merged = klr.merge_adapters(fitted)
    assert np.abs(np.asarray(merged(held_out)) - np.asarray(fitted(held_out))).max() < 1e-5


def test_layers_with_the_same_input_share_their_statistics(llama):
    model, calibration = llama
    paths = layer_paths(model)
    names = [f"transformer_layer_0/self_attention/{n}" for n in ("query", "key", "value")]
    hessians = input_hessians(model, {p: paths[p] for p in names}, calibration)
    assert hessians[names[0]] is hessians[names[1]] is hessians[names[2]]
    assert hessians[names[0]].shape == (16, 16)
    # Padded positions are left out: other tokens there change nothing.
    mask = calibration["padding_mask"]
    other = dict(calibration, token_ids=np.where(
        mask, calibration["token_ids"], (calibration["token_ids"] + 5) % 60 + 1))
    assert not np.array_equal(other["token_ids"], calibration["token_ids"])
    again = input_hessians(model, {names[0]: paths[names[0]]}, other)[names[0]]
    np.testing.assert_allclose(again, hessians[names[0]], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fields,message", [
    (dict(base_quantization=None),
     "`calibration` fits the kernels of an int4 base (GPTQ); it needs "
     "base_quantization='int4'. Received: base_quantization=None"),
    (dict(base_quantization="int8"),
     "it needs base_quantization='int4'. Received: base_quantization='int8'"),
])
def test_calibration_needs_an_int4_base(llama, fields, message):
    model, calibration = llama
    weights = tiny_models.weights_of(model)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        klr.add_adapters(model, rank=2, calibration=calibration, **fields)
    assert all(np.array_equal(a, b) for a, b in zip(weights, tiny_models.weights_of(model)))


def test_bad_calibration_inputs_are_refused(llama):
    model, calibration = llama
    empty = {key: value[:0] for key, value in calibration.items()}
    with pytest.raises(ValueError, match=r"`calibration` holds no examples. Received: "
                       r"\{'token_ids': shape \(0, 12\), 'padding_mask': shape \(0, 12\)\}"):
        klr.add_adapters(model, rank=2, base_quantization="int4", calibration=empty)
    ragged = dict(calibration, padding_mask=calibration["padding_mask"][:3])
    with pytest.raises(ValueError, match="the same number of examples under every key"):
        klr.add_adapters(model, rank=2, base_quantization="int4", calibration=ragged)
    with pytest.raises(TypeError, match="Received: list"):
        klr.add_adapters(model, rank=2, base_quantization="int4", calibration=[1, 2])


def test_an_einsum_layout_gptq_cannot_read_is_refused():
    inputs = keras.Input((5, 16))
    # The contracted axis "d" ends the kernel, not leads it.
    outputs = keras.layers.EinsumDense("btd,hd->bth", output_shape=(None, 8),
                                       name="proj")(inputs)
    model = keras.Model(inputs, outputs)
    calibration = np.ones((4, 5, 16), "float32")
    with pytest.raises(ValueError, match="Received: layer 'proj' with equation 'btd,hd->bth'"):
        klr.add_adapters(model, rank=2, targets=["proj"], base_quantization="int4",
                         calibration=calibration)
