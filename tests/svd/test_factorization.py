import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_lowrank.svd import kernel_matrix
from keras_lowrank.svd import relative_error
from keras_lowrank.svd import select_rank
from keras_lowrank.svd import singular_values
from keras_lowrank.svd import truncated_svd
from keras_lowrank.svd.kernel_layout import KernelLayout

SPECTRUM = np.linspace(10.0, 0.1, 30)


def known_spectrum_matrix(shape, spectrum, seed=0):
    """`Q1 · diag(spectrum) · Q2ᵀ` with random orthonormal Q1, Q2 (float64)."""
    rng = np.random.default_rng(seed)
    q1, _ = np.linalg.qr(rng.standard_normal((shape[0], len(spectrum))))
    q2, _ = np.linalg.qr(rng.standard_normal((shape[1], len(spectrum))))
    return (q1 * spectrum) @ q2.T


def analytic_tail(spectrum, rank):
    return np.sqrt(np.sum(spectrum[rank:] ** 2) / np.sum(spectrum**2))


@pytest.fixture
def matrix():
    return known_spectrum_matrix((40, 30), SPECTRUM)


def test_singular_values_recover_the_spectrum(matrix):
    np.testing.assert_allclose(singular_values(matrix), SPECTRUM, atol=1e-12)


@pytest.mark.parametrize("rank", [1, 5, 17, 29])
def test_truncation_error_is_the_analytic_tail(matrix, rank):
    left, right = truncated_svd(matrix, rank=rank)
    assert left.shape == (40, rank) and right.shape == (rank, 30)
    assert left.dtype == np.float32 and right.dtype == np.float32
    error = relative_error(matrix, left, right)
    assert abs(error - analytic_tail(SPECTRUM, rank)) <= 1e-6


def test_full_rank_reconstructs(matrix):
    left, right = truncated_svd(matrix, rank=30)
    assert relative_error(matrix, left, right) <= 1e-5
    assert np.max(np.abs(left.astype(np.float64) @ right - matrix)) <= 1e-5


def test_energy_picks_select_rank(matrix):
    left, _ = truncated_svd(matrix, energy=0.9)
    # 15 values hold 0.8777 of sum σ², 16 hold 0.9009.
    assert left.shape[1] == select_rank(SPECTRUM, energy=0.9) == 16


def test_accepts_keras_variables_and_numpy_int_rank(matrix):
    variable = keras.Variable(matrix.astype("float32"))
    left, right = truncated_svd(variable, rank=np.int64(4))
    assert abs(relative_error(variable, left, right) - analytic_tail(SPECTRUM, 4)) < 1e-6


@pytest.mark.parametrize(
    "equation, kernel_shape",
    [("abc,cde->abde", (16, 4, 8)), ("abcd,cde->abe", (4, 8, 16))],
)
def test_einsum_kernels_use_the_layout(equation, kernel_shape):
    layout = KernelLayout.for_einsum(equation, kernel_shape)
    spectrum = np.linspace(5.0, 0.5, 16)
    matrix = known_spectrum_matrix((layout.fan_in, layout.fan_out), spectrum)
    kernel = keras.ops.convert_to_numpy(layout.from_matrix(matrix))
    assert kernel.shape == kernel_shape
    np.testing.assert_allclose(
        singular_values(kernel, layout=layout), spectrum, atol=1e-12
    )
    left, right = truncated_svd(kernel, rank=6, layout=layout)
    assert left.shape == (layout.fan_in, 6) and right.shape == (6, layout.fan_out)
    error = relative_error(kernel, left, right, layout=layout)
    assert abs(error - analytic_tail(spectrum, 6)) <= 1e-6
    full_left, full_right = truncated_svd(kernel, rank=16, layout=layout)
    rebuilt = layout.from_matrix(full_left.astype(np.float64) @ full_right)
    assert np.max(np.abs(keras.ops.convert_to_numpy(rebuilt) - kernel)) <= 1e-5


def test_layer_spectra():
    dense = keras.layers.Dense(8)
    dense.build((None, 12))
    kernel = keras.ops.convert_to_numpy(dense.kernel).astype(np.float64)
    expected = np.linalg.svd(kernel, compute_uv=False)
    np.testing.assert_allclose(singular_values(dense), expected, rtol=1e-12)
    query = keras.layers.EinsumDense("abc,cde->abde", (None, 2, 4))
    query.build((None, 3, 12))
    matrix, layout = kernel_matrix(query)
    assert matrix.shape == (12, 8) and layout.kernel_shape == (12, 2, 4)
    np.testing.assert_allclose(
        singular_values(query), np.linalg.svd(matrix, compute_uv=False), rtol=1e-12
    )


def test_relative_error_of_zero_matrix():
    zero = np.zeros((3, 2))
    assert relative_error(zero, np.zeros((3, 1)), np.zeros((1, 2))) == 0.0
    assert relative_error(zero, np.ones((3, 1)), np.ones((1, 2))) == float("inf")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, r"exactly one of `rank` or `energy`\. Received: rank=None, energy=None"),
        ({"rank": 3, "energy": 0.9}, r"Received: rank=3, energy=0\.9"),
        ({"rank": 0}, r"positive integer at most min\(fan_in, fan_out\) = "
                      r"min\(40, 30\) = 30\. Received: rank=0"),
        ({"rank": 31}, r"Received: rank=31"),
        ({"rank": 2.5}, r"Received: rank=2\.5"),
        ({"rank": True}, r"Received: rank=True"),
        ({"energy": 0.0}, r"Received: energy=0\.0"),
    ],
)
def test_truncated_svd_argument_errors(matrix, kwargs, match):
    with pytest.raises(ValueError, match=match):
        truncated_svd(matrix, **kwargs)


def test_shape_errors():
    layout = KernelLayout.for_einsum("abc,cde->abde", (16, 4, 8))
    with pytest.raises(ValueError, match=r"Expected a 2-D matrix.*shape \(16, 4, 8\)"):
        truncated_svd(np.ones((16, 4, 8)), rank=2)
    with pytest.raises(ValueError, match=r"shape \(16, 4, 9\) but `layout` describes"):
        truncated_svd(np.ones((16, 4, 9)), rank=2, layout=layout)
    with pytest.raises(ValueError, match=r"left @ right has shape \(3, 3\)"):
        relative_error(np.ones((3, 2)), np.ones((3, 1)), np.ones((1, 3)))


def test_layer_errors():
    with pytest.raises(TypeError, match=r"Dense or keras\.layers\.EinsumDense.*class Conv1D"):
        singular_values(keras.layers.Conv1D(2, 3))
    with pytest.raises(ValueError, match=r"Layer 'unbuilt' is not built"):
        singular_values(keras.layers.Dense(2, name="unbuilt"))
    dense = keras.layers.Dense(4, name="quantized")
    dense.build((None, 8))
    dense.quantize("int8")
    with pytest.raises(ValueError, match=r"'quantized' is quantized \(quantization_mode='int8'\)"):
        singular_values(dense)
    plain = keras.layers.Dense(4, name="plain")
    plain.build((None, 8))
    layout = KernelLayout.for_dense((8, 4))
    with pytest.raises(ValueError, match=r"`layout` is taken from the layer itself"):
        singular_values(plain, layout=layout)


def test_svd_imports_before_the_layers():
    """keras_lowrank.svd imports keras_lowrank.layers: no import cycle."""
    code = (
        "import keras_lowrank.svd, keras_lowrank.layers.low_rank_dense, "
        "keras_lowrank.layers.low_rank_einsum_dense"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
