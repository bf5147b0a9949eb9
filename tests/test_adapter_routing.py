"""Per-example adapter choice in one batch, and its export (issue 10, part 4)."""

import keras
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.surgery.layer_paths import layer_paths
from tests import tiny_models as tiny


@pytest.fixture(scope="module")
def two():
    model = tiny.randomize_adapter(klr.add_adapters(tiny.bert_classifier(), rank=2), "default", 1, scale=0.5)
    model = klr.add_adapters(model, targets=["query", "key", "value"], rank=3,
                             adapter_name="topic")
    return tiny.randomize_adapter(model, "topic", 2, scale=0.5)


def _rows(inputs, index):
    return {**inputs, "adapter_index": np.asarray(index, "int32")}


def _alone(model, name, inputs):
    klr.set_adapter(model, name)
    return model.predict(inputs, verbose=0)


def test_each_row_gets_its_own_adapter(two):
    x = tiny.bert_inputs(batch=4)
    router = klr.route_adapters(two, ["default", "topic"])
    got = router.predict(_rows(x, [0, 1, 1, 2]), verbose=0)
    default, topic = _alone(two, "default", x), _alone(two, "topic", x)
    with klr.disable_adapters(two):
        base = two.predict(x, verbose=0)
    want = np.stack([default[0], topic[1], topic[2], base[3]])
    assert np.abs(got - want).max() < 1e-6
    assert np.abs(default - topic).max() > 100 * 1e-6  # the adapters really differ


def test_the_user_model_is_untouched_and_routing_ends_with_the_call(two):
    klr.set_adapter(two, "topic")
    x = tiny.bert_inputs(batch=2)
    before = two.predict(x, verbose=0)
    klr.route_adapters(two, ["default", "topic"]).predict(_rows(x, [0, 0]), verbose=0)
    np.testing.assert_array_equal(two.predict(x, verbose=0), before)


def test_router_saves_and_exports_with_the_index_as_an_input(two, tmp_path):
    router = klr.route_adapters(two, ["default", "topic"])
    x = _rows(tiny.bert_inputs(batch=4), [0, 1, 2, 1])
    want = router.predict(x, verbose=0)
    path = tmp_path / "router.keras"
    router.save(path)
    loaded = keras.models.load_model(path, compile=False)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), want)
    report = klr.export(router, tmp_path / "router.tflite", "tflite", sample_inputs=x)
    assert report.verified and report.max_abs_diff < 1e-5
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(tmp_path / "router.tflite"))
    names = set(interpreter.get_signature_runner().get_input_details())
    assert "adapter_index" in names


def test_bad_routes_are_refused(two):
    with pytest.raises(ValueError, match=r"distinct names of the model's adapters. Received: "
                                         r"adapter_names=\['nope'\]. Its adapters: \['default', 'topic'\]"):
        klr.route_adapters(two, ["nope"])
    with pytest.raises(ValueError, match=r"Received: adapter_names=\['topic', 'topic'\]"):
        klr.route_adapters(two, ["topic", "topic"])
    dora = klr.add_adapters(two, rank=2, adapter_name="mag", use_dora=True)
    with pytest.raises(ValueError, match=r"adapter 'mag' on layer '.*' is a 'dora' adapter"):
        klr.route_adapters(dora, ["default", "mag"])
