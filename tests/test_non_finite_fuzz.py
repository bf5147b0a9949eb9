"""Fuzz: a NaN or Inf injected anywhere along add -> save -> load -> merge ->
export is caught, by name, at the first step that meets it (issue 12).

Each seeded case picks a site, a value (NaN, +Inf, -Inf) and a position.
"""

import json
import struct

import keras
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.surgery.layer_paths import layer_paths

VALUES = (np.nan, np.inf, -np.inf)
SITES = ("base weight", "factor", "head", "file tensor", "overflowing output")
CASES = 15


def _model():
    inputs = keras.Input((6,), name="x")
    hidden = keras.layers.Dense(8, activation="tanh", name="hidden")(inputs)
    hidden = keras.layers.Dense(8, name="proj")(hidden)
    outputs = keras.layers.Dense(3, name="head")(hidden)
    return keras.Model(inputs, outputs, name="net")


def _poison(array, rng, value):
    array = np.array(array, copy=True)
    array.flat[rng.integers(array.size)] = value
    return array


def _poison_file(path, out, key, rng, value):
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    start, end = header[key]["data_offsets"]
    body = bytearray(raw[8 + size :])
    count = (end - start) // 4
    at = start + 4 * int(rng.integers(count))
    body[at : at + 4] = struct.pack("<f", value)
    out.write_bytes(raw[: 8 + size] + bytes(body))
    return out


def _run_case(seed, tmp_path):
    """Returns `(site, name the error must carry, the error)`."""
    rng = np.random.default_rng(seed)
    site = SITES[seed % len(SITES)]
    value = VALUES[rng.integers(len(VALUES))]
    base = _model()
    config = dict(targets=["hidden", "proj"], rank=2, trainable=["head"])
    if site == "base weight":
        weight = base.weights[rng.integers(len(base.weights))]
        weight.assign(_poison(weight.numpy(), rng, value))
        with pytest.raises(ValueError) as info:
            klr.add_adapters(base, **config)
        return site, f"weight '{weight.path}'", info.value
    if site == "overflowing output":
        # Finite weights whose product overflows float32: only export sees it.
        base.get_layer("head").kernel.assign(np.full((8, 3), 3e38, "float32"))
    model = klr.add_adapters(base, **config)
    adapters = [p for p, layer in layer_paths(model).items()
                if isinstance(layer, klr.layers.LoRAAdapter)]
    if site == "factor":
        path = adapters[rng.integers(len(adapters))]
        factor = [layer_paths(model)[path].lora_a, layer_paths(model)[path].lora_b][rng.integers(2)]
        factor.assign(_poison(factor.numpy(), rng, value))
        with pytest.raises(ValueError) as info:
            klr.save_adapters(model, tmp_path / "a.safetensors")
        assert not (tmp_path / "a.safetensors").exists()
        with pytest.raises(ValueError) as merge_info:
            klr.merge_adapters(model)
        assert factor.path in str(merge_info.value)
        return site, f"tensor '{path}/{factor.path.rsplit('/', 1)[-1]}'", info.value
    if site == "head":
        weight = model.get_layer("head").weights[rng.integers(2)]
        weight.assign(_poison(weight.numpy(), rng, value))
        with pytest.raises(ValueError) as info:
            klr.save_adapters(model, tmp_path / "a.safetensors")
        return site, f"tensor 'head/{weight.path.rsplit('/', 1)[-1]}'", info.value
    file = tmp_path / "a.safetensors"
    klr.save_adapters(model, file)
    if site == "file tensor":
        path = adapters[rng.integers(len(adapters))]
        key = f"{path}/{('lora_a', 'lora_b')[rng.integers(2)]}"
        bad = _poison_file(file, tmp_path / "bad.safetensors", key, rng, value)
        with pytest.raises(ValueError) as info:
            klr.load_adapters(base, bad)
        return site, f"tensor '{key}'", info.value
    loaded = klr.load_adapters(base, file)
    merged = klr.merge_adapters(loaded)
    target = tmp_path / "net.tflite"
    with pytest.raises(klr.ExportVerificationError) as info:
        klr.export(merged, target, "tflite")
    assert not target.exists()
    return site, "non-finite", info.value


@pytest.mark.parametrize("seed", range(CASES))
def test_non_finite_values_are_caught_by_name(seed, tmp_path):
    site, name, error = _run_case(seed, tmp_path)
    assert name in str(error), (site, str(error))
