"""The memory-bandwidth child and decode's share of the bound
(`benchmarks/bandwidth.py`, `benchmarks/decode_bound.py`), and the GEMM
shares against the probe's median and best. No timing is asserted."""

import os

import numpy as np
import pytest

from benchmarks import bandwidth
from benchmarks import decode_bound
from benchmarks import report
from benchmarks import results_md
from tests.benchmarks.test_bench_report import fake_results

MIB = 2**20


def test_triad_counts_bytes_as_stream_does():
    # 3 arrays x 8 bytes per element; 4 with the write-allocate read of `a`.
    assert bandwidth.triad_bytes(1000) == 24_000
    assert bandwidth.triad_bytes(1000, write_allocate=True) == 32_000
    assert bandwidth.triad_bytes(256 * MIB // 8) == 768 * MIB


def test_arrays_are_sized_beyond_the_last_level_cache():
    cache = bandwidth.last_level_cache_bytes()
    size = bandwidth.default_array_bytes()
    assert size >= bandwidth.MIN_ARRAY_BYTES and size >= 4 * (cache or 0)


@pytest.mark.parametrize("threads", [1, 2])
def test_triad_bandwidth_on_a_small_array(threads):
    # 3 blocks and a bit: every block boundary and a short last block.
    result = bandwidth.triad_bandwidth(8 * (3 * bandwidth.BLOCK + 5), 3, threads)
    assert result["n"] == 3 * bandwidth.BLOCK + 5 and result["threads"] == threads
    assert result["max_abs_error"] == 0.0  # a = 1 + 3 x 2 everywhere
    assert result["bytes_per_triad"] == 24 * result["n"]
    assert len(result["seconds"]) == 3
    assert result["gb_per_s_best"] >= result["gb_per_s_median"] > 0
    assert result["gb_per_s_best_write_allocate"] == pytest.approx(
        result["gb_per_s_best"] * 4 / 3)
    assert result["gb_per_s_best"] == pytest.approx(
        result["bytes_per_triad"] / min(result["seconds"]) / 1e9)
    copied = result["copy"]  # STREAM's copy, 2 x 8 bytes per element
    assert copied["bytes_per_copy"] == 16 * result["n"] and len(copied["seconds"]) == 3
    assert copied["gb_per_s_best"] >= copied["gb_per_s_median"] > 0


def test_triad_refuses_what_cannot_run():
    with pytest.raises(ValueError, match="Received: array_bytes=7"):
        bandwidth.triad_bandwidth(7, 3)
    with pytest.raises(ValueError, match="Received: repeats=0"):
        bandwidth.triad_bandwidth(800, 0)
    with pytest.raises(ValueError, match="Received: threads=-1"):
        bandwidth.triad_bandwidth(800, 1, threads=-1)


def test_bound_and_share_arithmetic():
    # 10 GB/s over 500 MB per token: at most 20 tokens/s; 15 is 75% of it.
    assert decode_bound.decode_bound(15.0, 500_000_000, 10e9) == {
        "bound_tokens_per_s": 20.0, "share_of_bound": 0.75}
    assert decode_bound.decode_bound(None, 500_000_000, 10e9) == {
        "bound_tokens_per_s": 20.0, "share_of_bound": None}
    assert decode_bound.decode_bound(15.0, None, 10e9)["bound_tokens_per_s"] is None


def _with_generation(results):
    results["bandwidth"] = {"gb_per_s_best": 10.0, "gb_per_s_median": 8.0,
                            "gb_per_s_best_write_allocate": 40 / 3,
                            "array_bytes": 1200 * MIB, "threads": 2, "repeats": 10}
    float32 = {"bytes_per_token": 500_000_000, "kv_cache_bytes": 100_000_000,
               "constant_bytes": 600_000_000, "lookup_table_bytes": 100_001_000}
    int8 = {**float32, "bytes_per_token": 125_000_000}
    results["generation"] = {
        "model": "tiny", "new_tokens": 8, "prompt_lengths": [5, 12],
        "max_length": 96, "rounds": 1, "speedup_vs_keras": {
            "litert_float32": 1.5, "litert_dynamic": 3.0},
        "keras": {"decode_tokens_per_s": 10.0, "decode_bytes": float32},
        "litert_float32": {"decode_tokens_per_s": 15.0, "decode_bytes": float32,
                           "time_to_first_token_ms": 9.0, "agreement": 1.0,
                           "next_token_agreement": None},
        "litert_dynamic": {"decode_tokens_per_s": 30.0, "decode_bytes": int8,
                           "time_to_first_token_ms": 9.0, "agreement": 0.9,
                           "next_token_agreement": 0.95},
        # The phone LLM runtimes' rows (`benchmarks/generation_runtimes.py`).
        "other_runtimes_vs_keras": {"litertlm_dynamic": 4.0},
        "litertlm_dynamic": {"decode_tokens_per_s": 40.0, "decode_bytes": int8,
                             "time_to_first_token_ms": 5.0, "agreement": 0.9,
                             "next_token_agreement": 0.9},
    }
    return results


def test_the_bound_uses_the_kernel_that_moved_more():
    triad = {"gb_per_s_best": 10.0, "gb_per_s_median": 8.0}
    assert decode_bound.bandwidth_used(triad) == ("triad", 10.0, 8.0)
    assert decode_bound.bandwidth_used({**triad, "copy": {
        "gb_per_s_best": 24.0, "gb_per_s_median": 20.0}}) == ("copy", 24.0, 20.0)
    assert decode_bound.bandwidth_used({**triad, "copy": {
        "gb_per_s_best": 9.0, "gb_per_s_median": 9.0}}) == ("triad", 10.0, 8.0)
    assert decode_bound.bandwidth_used({"error": "boom"}) == (None, None, None)


def test_each_generator_gets_its_bound_and_share():
    bound = decode_bound.rows(_with_generation(fake_results()))
    assert (bound["bandwidth_kernel"], bound["bandwidth_gb_per_s_best"],
            bound["bandwidth_gb_per_s_median"]) == ("triad", 10.0, 8.0)
    assert list(bound["rows"]) == ["keras", "litert_dynamic", "litert_float32",
                                   "litertlm_dynamic"]
    assert bound["rows"]["litert_float32"] == {
        "decode_tokens_per_s": 15.0, "bytes_per_token": 500_000_000,
        "kv_cache_bytes": 100_000_000, "bound_tokens_per_s": 20.0,
        "share_of_bound": 0.75, "share_of_bound_median": 15.0 / 16.0,
        # 10 GB/s over 600 MB: 16.67 tokens/s
        "bound_with_cache_tokens_per_s": 10e9 / 600e6,
        "share_of_bound_with_cache": 15.0 / (10e9 / 600e6)}
    assert bound["rows"]["keras"]["share_of_bound"] == 0.5
    # int8 weights: a quarter of the bytes, 80 tokens/s at most.
    assert bound["rows"]["litert_dynamic"]["bound_tokens_per_s"] == 80.0
    assert bound["rows"]["litert_dynamic"]["share_of_bound"] == 30.0 / 80.0
    assert bound["rows"]["litertlm_dynamic"]["share_of_bound"] == 40.0 / 80.0


def test_results_md_shows_the_bound_and_its_definition():
    results = _with_generation(fake_results())
    results["decode_bound"] = decode_bound.rows(results)
    text = results_md.render(results)
    assert "### Decode against the memory bound" in text
    assert "10.0 GB/s best, 8.0 GB/s median (13.3 GB/s best counting" in text
    assert "3 float64 arrays of 1,200 MiB, 2 threads, 10 runs" in text
    assert ("| LiteRT float32 | 15.0 | 500.0 | 20.0 | 75.0% | 93.8% | 90.0% |"
            in text)
    assert "| Keras `generate()` | 10.0 | 500.0 | 20.0 | 50.0% | 62.5% |" in text
    assert "| LiteRT dynamic | 30.0 | 125.0 | 80.0 | 37.5% | 46.9% |" in text
    assert "| LiteRT-LM dynamic | 40.0 | 125.0 | 80.0 | 50.0% | 62.5% |" in text
    assert "the faster kernel (triad, 10.0 GB/s)" in text
    # With a copy that moved more, the bound is the copy's.
    results["bandwidth"]["copy"] = {"gb_per_s_best": 20.0, "gb_per_s_median": 16.0}
    results["decode_bound"] = decode_bound.rows(results)
    text = results_md.render(results)
    assert "STREAM copy `a = c` (`np.copyto`, 2 x 8 per element): 20.0 GB/s best" in text
    assert "the faster kernel (copy, 20.0 GB/s)" in text
    assert "| LiteRT float32 | 15.0 | 500.0 | 40.0 | 37.5% | 46.9% | 45.0% |" in text
    del results["bandwidth"], results["decode_bound"]
    assert ("Memory bandwidth not measured: not run"
            in results_md.render(results))


def test_gemm_shares_against_median_and_best():
    results = fake_results()
    results["gemm"] = {"shape": [4096, 384, 1536], "repeats": 10, "dtypes": {
        "float32": {"gflops_median": 200.0, "gflops_best": 250.0}}}
    assert report.gemm_flops_per_second(results) == 200e9
    assert report.gemm_flops_per_second(results, statistic="best") == 250e9
    with pytest.raises(ValueError, match="statistic='mean'"):
        report.gemm_flops_per_second(results, statistic="mean")
    compute = report.compute_rows(results)
    assert (compute["gemm_gflops_per_s"], compute["gemm_best_gflops_per_s"]) == (
        200.0, 250.0)
    full = compute["rows"]["full"]  # 1.0 s per step
    assert full["share_of_gemm"] == full["flops_per_step"] / 200e9
    assert full["share_of_gemm_best"] == full["flops_per_step"] / 250e9
    results["compute"] = compute
    text = results_md.render(results)
    assert "| of GEMM (median) | of GEMM (best) |" in text
    assert (f"| {100 * full['share_of_gemm']:.1f}% "
            f"| {100 * full['share_of_gemm_best']:.1f}% |") in text
    assert "float32 200.0 GFLOP/s median (250.0 best)" in text
    assert "Shares below are of the float32 median and of its best repeat" in text
    # A results.json from before the best share: recomputed from its gemm entry.
    best_cell = f"| {100 * full['share_of_gemm_best']:.1f}% |"
    for row in results["compute"]["rows"].values():
        del row["share_of_gemm_best"]
    assert best_cell in results_md.render(results)


@pytest.fixture(scope="module")
def two_signature_tflite(tmp_path_factory):
    """A `.tflite` with a `decode` signature (gather a row of a 10 x 8
    table, a matmul by an 8 x 16 weight, a KV-cache-like input scaled by
    a constant) and a `prefill_4` signature with a weight of its own."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    table = rng.normal(size=(10, 8)).astype("float32")
    weight = rng.normal(size=(8, 16)).astype("float32")
    other = rng.normal(size=(8, 4)).astype("float32")

    class Steps(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1], tf.int32),
                                      tf.TensorSpec([1, 3], tf.float32)])
        def decode(self, token_ids, cache):
            rows = tf.gather(tf.constant(table), token_ids)  # (1, 8)
            return {"logits": tf.matmul(rows, tf.constant(weight)),
                    "next_cache": cache * 2.0}

        @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
        def prefill_4(self, hidden):
            return {"out": tf.matmul(hidden, tf.constant(other))}

    folder = tmp_path_factory.mktemp("decode_bytes")
    steps = Steps()
    tf.saved_model.save(steps, str(folder / "saved_model"), signatures={
        "decode": steps.decode, "prefill_4": steps.prefill_4})
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(folder / "saved_model"), signature_keys=["decode", "prefill_4"])
    path = folder / "steps.tflite"
    path.write_bytes(converter.convert())
    return str(path)


def test_decode_bytes_count_the_decode_signature_constants(two_signature_tflite):
    counted = decode_bound.litert_decode_bytes(two_signature_tflite)
    table, weight, scalar = 10 * 8 * 4, 8 * 16 * 4, 4
    assert counted == {
        "constant_bytes": table + weight + scalar,
        # One row of the table looked up, not the table.
        "bytes_per_token": table // 10 + weight + scalar,
        "lookup_table_bytes": table,
        "kv_cache_bytes": 3 * 4,
    }
    # prefill_4's own weight is not decode's, and is counted for prefill_4.
    assert decode_bound.litert_decode_bytes(two_signature_tflite, "prefill_4") == {
        "constant_bytes": 8 * 4 * 4, "bytes_per_token": 8 * 4 * 4,
        "lookup_table_bytes": 0, "kv_cache_bytes": 0}
    with pytest.raises(ValueError, match=r"Its signatures are: \['decode', 'prefill_4'\]"):
        decode_bound.litert_decode_bytes(two_signature_tflite, "decode_1")
    assert os.path.getsize(two_signature_tflite) > table + weight


def test_bandwidth_child_on_quick_settings(tmp_path):
    import json
    import subprocess
    import sys

    from benchmarks.settings import Settings
    from tests.benchmarks.test_bench_report import ROOT

    settings = tmp_path / "settings.json"
    settings.write_text(Settings.quick().to_json())
    out = tmp_path / "bandwidth.json"
    subprocess.run([sys.executable, "-m", "benchmarks.bandwidth", "--settings",
                    str(settings), "--out", str(out)], cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": ROOT}, check=True)
    result = json.loads(out.read_text())
    assert (result["array_bytes"], result["repeats"]) == (32 * MIB, 3)
    assert result["bytes_per_triad"] == 3 * 32 * MIB
    assert result["gb_per_s_best"] >= result["gb_per_s_median"] > 0
    assert result["max_abs_error"] == 0.0


def test_rows_without_the_children():
    assert decode_bound.rows({}) == {
        "bandwidth_kernel": None, "bandwidth_gb_per_s_best": None,
        "bandwidth_gb_per_s_median": None, "rows": {}}
    results = _with_generation(fake_results())
    del results["bandwidth"]
    row = decode_bound.rows(results)["rows"]["litert_float32"]
    assert row["bytes_per_token"] == 500_000_000 and row["share_of_bound"] is None
    results["generation"] = {"error": "RuntimeError: boom"}
    assert decode_bound.rows(results)["rows"] == {}
