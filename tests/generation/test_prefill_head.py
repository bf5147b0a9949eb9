"""Prefill runs the LM head on the chunk's last real position only, with the
logits the head gives there on every position (issue 25)."""

import numpy as np
import pytest

from keras_lowrank.generation.cached_causal_lm import cache_shape
from keras_lowrank.generation.cached_causal_lm import call_with_cache
from keras_lowrank.generation.cached_causal_lm import call_with_cache_at
from keras_lowrank.generation.export_generator import export_generator
from tests.generation import tiny_lms

CHUNK = 8


@pytest.mark.parametrize("name", sorted(tiny_lms.MODELS))
def test_the_head_at_one_position_equals_the_full_logits_there(tiny_models, name):
    model = tiny_models[name]
    tokens = np.random.default_rng(0).integers(3, tiny_lms.VOCAB, (1, CHUNK)).astype("int32")
    cache = np.zeros(cache_shape(model, 16), "float32")
    full, full_cache = call_with_cache(model, tokens, cache, 0)
    one, one_cache = call_with_cache_at(model, tokens, cache, 0, lambda h: h[:, 5:6])
    np.testing.assert_allclose(np.asarray(one)[:, 0], np.asarray(full)[:, 5], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(one_cache), np.asarray(full_cache))


def test_the_prefill_graph_holds_no_full_length_logits(tiny_models, tiny_references,
                                                      tmp_path):
    from ai_edge_litert import schema_py_generated as schema

    path = tmp_path / "llama.tflite"
    lm = tiny_models["llama"]
    export_generator(lm, str(path), "tflite", max_length=32,
                     prefill_lengths=(CHUNK,), max_new_tokens=4,
                     reference=tiny_references(lm, 32))
    with open(path, "rb") as file:
        model = schema.ModelT.InitFromPackedBuf(file.read(), 0)
    shapes = {subgraph.name.decode(): [list(t.shape) for t in subgraph.tensors]
              for subgraph in model.subgraphs}
    # The decode step's logits are there; the prefill holds none for CHUNK positions.
    assert [1, tiny_lms.VOCAB] in shapes["decode"] or [1, 1, tiny_lms.VOCAB] in shapes["decode"]
    assert [1, CHUNK, tiny_lms.VOCAB] not in shapes[f"prefill_{CHUNK}"]
    assert [CHUNK, tiny_lms.VOCAB] not in shapes[f"prefill_{CHUNK}"]
