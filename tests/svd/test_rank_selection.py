import numpy as np
import pytest

from keras_lowrank.svd import cumulative_energy
from keras_lowrank.svd import select_rank

# σ² = [9, 4, 1, 1, 1], total 16: every energy share below is exact in binary.
SPECTRUM = [3.0, 2.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "energy, expected",
    [
        (0.5, 1),
        (0.5625, 1),  # 9/16 exactly
        (0.57, 2),
        (0.8125, 2),  # 13/16 exactly
        (0.9, 4),  # 14/16 < 0.9 <= 15/16
        (0.95, 5),
        (1.0, 5),
    ],
)
def test_select_rank_by_energy(energy, expected):
    assert select_rank(SPECTRUM, energy=energy) == expected


@pytest.mark.parametrize(
    "max_rel_error, expected",
    [
        (0.7, 1),  # sqrt(7/16) = 0.661
        (0.5, 2),  # sqrt(3/16) = 0.433
        (0.36, 3),  # sqrt(2/16) = 0.354
        (0.3, 4),
        (0.25, 4),  # sqrt(1/16) = 0.25 exactly
        (0.2, 5),
        (0.0, 5),
    ],
)
def test_select_rank_by_max_rel_error(max_rel_error, expected):
    assert select_rank(SPECTRUM, max_rel_error=max_rel_error) == expected


def test_select_rank_sorts_its_input():
    assert select_rank([1.0, 3.0, 1.0, 2.0, 1.0], energy=0.8125) == 2
    assert select_rank(np.array(SPECTRUM[::-1]), energy=0.9) == 4


def test_energy_one_keeps_only_nonzero_values():
    assert select_rank([3.0, 2.0, 1.0, 0.0, 0.0], energy=1.0) == 3
    assert select_rank([3.0, 2.0, 1.0, 0.0, 0.0], max_rel_error=0.0) == 3
    # float64 round-off "zeros" of a rank-deficient matrix cost no rank.
    assert select_rank([1.0, 1e-17, 1e-18], energy=1.0) == 1


def test_degenerate_spectra():
    assert select_rank([0.0, 0.0, 0.0], energy=0.9) == 1
    assert select_rank([5.0], energy=1.0) == 1
    assert select_rank([5.0], max_rel_error=0.0) == 1


def test_cumulative_energy_values():
    np.testing.assert_array_equal(
        cumulative_energy(SPECTRUM), [0.5625, 0.8125, 0.875, 0.9375, 1.0]
    )
    np.testing.assert_array_equal(cumulative_energy([0.0, 0.0]), [0.0, 0.0])


def test_select_rank_matches_cumulative_energy_on_random_spectrum():
    s = np.random.default_rng(0).exponential(size=200)
    energy = cumulative_energy(s)
    for target in (0.3, 0.5, 0.9, 0.99):
        k = select_rank(s, energy=target)
        assert energy[k - 1] >= target
        assert k == 1 or energy[k - 2] < target


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, r"exactly one of `energy` or `max_rel_error`\. Received: "
             r"energy=None, max_rel_error=None"),
        ({"energy": 0.9, "max_rel_error": 0.1},
         r"Received: energy=0\.9, max_rel_error=0\.1"),
        ({"energy": 0.0}, r"`energy` to be a float in \(0, 1\]\. Received: energy=0\.0"),
        ({"energy": 1.5}, r"Received: energy=1\.5"),
        ({"energy": "0.9"}, r"Received: energy='0\.9'"),
        ({"energy": True}, r"Received: energy=True"),
        ({"max_rel_error": 1.0},
         r"`max_rel_error` to be a float in \[0, 1\)\. Received: max_rel_error=1\.0"),
        ({"max_rel_error": -0.1}, r"Received: max_rel_error=-0\.1"),
    ],
)
def test_select_rank_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        select_rank(SPECTRUM, **kwargs)


@pytest.mark.parametrize(
    "spectrum, match",
    [
        ([], r"non-empty 1-D array of singular values\. Received: shape \(0,\)"),
        ([[1.0, 2.0]], r"Received: shape \(1, 2\)"),
        ([1.0, -0.5], r"finite, non-negative singular values\. Received: min=-0\.5"),
        ([1.0, np.nan], r"finite, non-negative"),
    ],
)
def test_select_rank_spectrum_errors(spectrum, match):
    with pytest.raises(ValueError, match=match):
        select_rank(spectrum, energy=0.9)
