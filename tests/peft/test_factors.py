"""`factors`: PEFT factors <-> keras_lowrank factors, one module at a time."""

import numpy as np

from keras_lowrank.peft import factors


def _delta_peft(lora_A, lora_B, scale):
    return scale * (lora_B @ lora_A).T  # (in, out), as x · delta


def _delta_parts(parts):
    return np.concatenate([p.scale * p.lora_a @ p.lora_b for p in parts], axis=1)


def test_split_and_join_are_exact(rng):
    lora_A = rng.normal(size=(4, 6)).astype("float32")
    lora_B = rng.normal(size=(9, 4)).astype("float32")
    magnitude = rng.uniform(1, 2, size=9).astype("float32")

    parts = factors.from_peft(lora_A, lora_B, magnitude, widths=[3, 3, 3])

    assert [p["lora_a"].shape for p in parts] == [(6, 4)] * 3
    assert [p["lora_b"].shape for p in parts] == [(4, 3)] * 3
    joined = [factors.Part(p["lora_a"], p["lora_b"], 2.0, p["lora_magnitude"]) for p in parts]
    np.testing.assert_allclose(_delta_parts(joined), _delta_peft(lora_A, lora_B, 2.0), atol=1e-5)
    back_A, back_B, back_m, scale = factors.to_peft(joined, [3, 3, 3])
    np.testing.assert_array_equal(back_A, lora_A)  # one shared A: same rank
    np.testing.assert_array_equal(back_B, lora_B)
    np.testing.assert_array_equal(back_m, magnitude)
    assert scale == 2.0


def test_parts_with_their_own_factors_join_block_diagonally(rng):
    parts = [
        factors.Part(rng.normal(size=(6, 2)), rng.normal(size=(2, 3)), 0.5),
        None,  # no adapter on this part: zero columns
        factors.Part(rng.normal(size=(6, 3)), rng.normal(size=(3, 4)), 4.0),
    ]
    lora_A, lora_B, magnitude, scale = factors.to_peft(parts, [3, 5, 4])

    assert lora_A.shape == (5, 6) and lora_B.shape == (12, 5) and magnitude is None
    delta = _delta_peft(lora_A, lora_B, scale)
    np.testing.assert_allclose(delta[:, :3], 0.5 * parts[0].lora_a @ parts[0].lora_b, atol=1e-5)
    np.testing.assert_array_equal(delta[:, 3:8], 0)
    np.testing.assert_allclose(delta[:, 8:], 4.0 * parts[2].lora_a @ parts[2].lora_b, atol=1e-4)


def test_dora_part_without_adapter_keeps_the_base_norm(rng):
    part = factors.Part(rng.normal(size=(6, 2)), rng.normal(size=(2, 3)), 1.0,
                        magnitude=np.full(3, 7.0))
    norms = [None, np.arange(4, dtype="float32")]
    _, _, magnitude, _ = factors.to_peft([part, None], [3, 4], norms)
    np.testing.assert_array_equal(magnitude, [7, 7, 7, 0, 1, 2, 3])


def test_head_weights_transpose():
    weight = np.arange(6, dtype="float32").reshape(2, 3)  # HF (out, in)
    matrix = factors.peft_weight_to_matrix(weight)
    assert matrix.shape == (3, 2)
    np.testing.assert_array_equal(factors.matrix_to_peft_weight(matrix), weight)
