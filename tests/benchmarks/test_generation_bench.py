"""The generation child of `make bench` (`benchmarks/generation.py`) on its
quick settings: a tiny Llama 3, LiteRT float32 and int8 beside Keras
`generate()`. The real run (SmolLM2) is `benchmarks/run.py --sections
generation`; its numbers are in docs/export.md."""

import json
import os
import subprocess
import sys

from benchmarks import generation
from benchmarks.settings import Settings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_generation_child_measures_litert_beside_keras(tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text(Settings.quick().to_json())
    out = tmp_path / "generation.json"
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": ROOT}
    subprocess.run([sys.executable, "-m", "benchmarks.generation", "--settings",
                    str(settings), "--out", str(out)], cwd=ROOT, env=env, check=True)
    results = json.loads(out.read_text())
    assert results["model"] == "tiny" and results["new_tokens"] == 8
    assert results["prompt_lengths"] == [5, 12]
    # The float artifact's tokens equal generate()'s (the child checks each
    # timed run too); a speed per prompt and round for every runner.
    assert results["litert_float32"]["agreement"] == 1.0
    assert 0.0 <= results["litert_dynamic"]["agreement"] <= 1.0
    for name in ("keras", "litert_float32", "litert_dynamic"):
        assert len(results[name]["decode_tokens_per_s_all"]) == 2
        assert results[name]["decode_tokens_per_s"] > 0
    assert results["litert_dynamic"]["size_bytes"] < results["litert_float32"]["size_bytes"]
    ratio = results["speedup_vs_keras"]["litert_float32"]
    assert ratio == (results["litert_float32"]["decode_tokens_per_s"]
                     / results["keras"]["decode_tokens_per_s"])
    # Bytes read per decoded token (benchmarks/decode_bound.py): the token
    # embedding (256 x 64 float32, kept float in int8 too) counts one row.
    for name in ("litert_float32", "litert_dynamic"):
        counted = results[name]["decode_bytes"]
        assert counted["lookup_table_bytes"] == 256 * 64 * 4
        assert counted["bytes_per_token"] == (counted["constant_bytes"]
                                              - 255 * 64 * 4)
        # (2 layers, 2 of k/v, 1 row, 96 positions, 2 heads, 16 per head) float32
        assert counted["kv_cache_bytes"] == 2 * 2 * 96 * 2 * 16 * 4
    assert results["keras"]["decode_bytes"] == results["litert_float32"]["decode_bytes"]
    assert (results["litert_dynamic"]["decode_bytes"]["bytes_per_token"]
            < results["litert_float32"]["decode_bytes"]["bytes_per_token"] / 2)
    table = generation.markdown(results)
    assert "| Keras `generate()` (greedy) |" in table
    assert f"| {ratio:.2f} |" in table
    assert generation.markdown({"skipped": "no SmolLM2"}) == "Not measured: no SmolLM2"
