"""The generation child of `make bench` (`benchmarks/generation.py`) on its
quick settings: a tiny Llama 3, LiteRT float32 and int8, LiteRT-LM float32
and int8 and ONNX Runtime GenAI float32 beside Keras `generate()`. The real run (SmolLM2) is `benchmarks/run.py --sections
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
    _check_other_runtimes(results)
    table = generation.markdown(results)
    assert "| Keras `generate()` (greedy) |" in table
    assert f"| {ratio:.2f} |" in table
    for label, name in (("LiteRT-LM float32", "litertlm_float32"),
                        ("LiteRT-LM dynamic", "litertlm_dynamic"),
                        ("ONNX Runtime GenAI float32", "genai_float32")):
        speed = results[name]["decode_tokens_per_s"]
        assert (f"| {label} | {speed:.1f} | "
                f"{results['other_runtimes_vs_keras'][name]:.2f} |") in table
    assert generation.markdown({"skipped": "no SmolLM2"}) == "Not measured: no SmolLM2"
    # A runtime that failed is a row that says so; the others stay.
    failed = {**results, "genai_float32": {"error": "RuntimeError: boom"}}
    failed["other_runtimes_vs_keras"] = {
        k: v for k, v in results["other_runtimes_vs_keras"].items() if k != "genai_float32"}
    assert ("| ONNX Runtime GenAI float32 | not measured: RuntimeError: boom |"
            in generation.markdown(failed))


# The tiny Llama 3's float32 weights: token embedding and output head
# (256 x 64 each, untied), 2 layers of q, k, v, o, gate, up, down and 2
# norms, the final norm.
TINY_PARAMETERS = (2 * 256 * 64 + 2 * (64 * 64 + 2 * 64 * 32 + 64 * 64
                                      + 3 * 64 * 128 + 2 * 64) + 64)


def _check_other_runtimes(results):
    """LiteRT-LM and GenAI rows: checked against Keras by their exports,
    timed in the same rounds."""
    assert TINY_PARAMETERS == 106_816
    for name in ("litertlm_float32", "litertlm_dynamic", "genai_float32"):
        entry = results[name]
        assert "error" not in entry, entry
        # 2 prompts x 1 round, less any run that stopped after one token.
        assert 1 <= len(entry["decode_tokens_per_s_all"]) <= 2
        assert entry["decode_tokens_per_s"] > 0
        assert entry["time_to_first_token_ms"] > 0
        assert entry["check_decode_tokens_per_s"] > 0
        assert results["other_runtimes_vs_keras"][name] == (
            entry["decode_tokens_per_s"] / results["keras"]["decode_tokens_per_s"])
    assert results["litertlm_float32"]["agreement"] == 1.0
    assert results["litertlm_float32"]["next_token_agreement"] is None
    assert results["litertlm_dynamic"]["next_token_agreement"] >= 0.8
    assert results["genai_float32"]["agreement"] == 1.0
    # GenAI's tokens in the timed runs, against generate()'s.
    assert results["genai_float32"]["timed_agreement"] == 1.0
    assert results["litertlm_float32"]["runtime"] == "LiteRT-LM 0.18.1"
    assert results["genai_float32"]["runtime"] == "onnxruntime-genai 0.18.0 (CPU)"
    # The bundle's TFLite model reads what the LiteRT artifact's does
    # (another signature layout), one embedding row per token; the bundle
    # adds the tokenizer and metadata.
    for name, litert in (("litertlm_float32", "litert_float32"),
                         ("litertlm_dynamic", "litert_dynamic")):
        counted, reference = results[name]["decode_bytes"], results[litert]["decode_bytes"]
        assert abs(counted["constant_bytes"] - reference["constant_bytes"]) <= 1024
        assert counted["bytes_per_token"] == counted["constant_bytes"] - 255 * 64 * 4
        assert counted["kv_cache_bytes"] == reference["kv_cache_bytes"]
        assert counted["constant_bytes"] < results[name]["size_bytes"] \
            < 2 * counted["constant_bytes"]
    assert (results["litertlm_dynamic"]["size_bytes"]
            < results["litertlm_float32"]["size_bytes"] * 0.6)
    # GenAI's model.onnx: every float32 weight plus under 4 KB of other
    # constants (rotary tables, shapes); one embedding row per token.
    counted = results["genai_float32"]["decode_bytes"]
    assert 4 * TINY_PARAMETERS <= counted["constant_bytes"] <= 4 * TINY_PARAMETERS + 4096
    assert counted["bytes_per_token"] == counted["constant_bytes"] - 255 * 64 * 4
    assert counted["kv_cache_bytes"] is None
    model_bytes = results["genai_float32"]["model_bytes"]
    assert counted["constant_bytes"] < model_bytes < results["genai_float32"]["size_bytes"]
