import os

import keras
import numpy as np
import pytest
from matplotlib import image as mpimg

from keras_lowrank.svd import plot_spectrum


def small_model():
    inputs = keras.Input((6, 16))
    x = keras.layers.EinsumDense("abc,cde->abde", (None, 2, 8), name="query")(inputs)
    x = keras.layers.Reshape((6, 16))(x)
    x = keras.layers.Dense(24, name="up")(x)
    outputs = keras.layers.Dense(4, name="down")(x)
    return keras.Model(inputs, outputs)


def read_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    return mpimg.imread(path)


def test_grid_png_for_a_model(tmp_path):
    path = tmp_path / "spectrum.png"
    returned = plot_spectrum(small_model(), path, ranks={"up": 5, "query": 3})
    assert returned == os.fspath(path)
    pixels = read_png(path)
    # Three layers in one row of three subplots, 5.2 x 3.6 inches at 100 dpi.
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    assert 300 <= pixels.shape[0] <= 500 and 1300 <= pixels.shape[1] <= 1700
    assert pixels[..., :3].std() > 0.05  # not a blank image
    assert os.listdir(tmp_path) == ["spectrum.png"]  # no temporary left behind


def test_targets_select_layers(tmp_path):
    one = read_png(plot_spectrum(small_model(), tmp_path / "one.png", targets="up"))
    two = read_png(
        plot_spectrum(small_model(), tmp_path / "two.png", targets=["up", "d*"])
    )
    assert one.shape[1] < 700 < two.shape[1]


def test_overlay_for_many_layers(tmp_path):
    rng = np.random.default_rng(0)
    matrices = {f"layer_{i}": rng.standard_normal((20, 10 + i)) for i in range(14)}
    pixels = read_png(plot_spectrum(matrices, tmp_path / "many.png", energy=0.9))
    assert 500 <= pixels.shape[0] <= 900 and 1100 <= pixels.shape[1] <= 1500


def test_list_of_layers_and_single_layer(tmp_path):
    dense = keras.layers.Dense(3, name="solo")
    dense.build((None, 5))
    read_png(plot_spectrum([dense], tmp_path / "list.png", ranks={"solo": 2}))
    read_png(plot_spectrum(dense, tmp_path / "single.png", energy=0.5))


def test_failed_plot_keeps_the_old_file(tmp_path):
    path = tmp_path / "kept.png"
    path.write_bytes(b"old")
    with pytest.raises(ValueError):
        plot_spectrum(small_model(), path, ranks={"up": 99})
    assert path.read_bytes() == b"old"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"path": "spectrum.jpg"}, r"path ending in '\.png'\. Received: path='.*/spectrum\.jpg'"),
        ({"ranks": {"up": 2}, "energy": 0.9}, r"at most one of `ranks` or `energy`"),
        ({"ranks": {"nope": 2}}, r"`ranks` names layers that are not plotted: \['nope'\]"),
        ({"ranks": {"up": 0}}, r"rank of 'up' to be an integer in \[1, 16\]\. "
                               r"Received: ranks\['up'\]=0"),
        ({"targets": "attention*"}, r"targets=\['attention\*'\] match none of the 3 "
                                    r"layers\. Available: down, query, up"),
    ],
)
def test_plot_errors(tmp_path, kwargs, match):
    kwargs.setdefault("path", "spectrum.png")
    kwargs["path"] = tmp_path / kwargs["path"]
    with pytest.raises(ValueError, match=match):
        plot_spectrum(small_model(), **kwargs)


def test_input_errors(tmp_path):
    no_dense = keras.Sequential([keras.Input((3,)), keras.layers.Activation("relu")])
    with pytest.raises(ValueError, match=r"Found no Dense or EinsumDense layers"):
        plot_spectrum(no_dense, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"Entry 'cube' must be .* a 2-D matrix\. "
                                         r"Received: an array of shape \(2, 2, 2\)"):
        plot_spectrum({"cube": np.ones((2, 2, 2))}, tmp_path / "x.png")
    with pytest.raises(TypeError, match=r"Expected a Keras model.*Received: str"):
        plot_spectrum("model", tmp_path / "x.png")
