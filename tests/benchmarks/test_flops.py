"""The bench's FLOP formula, its compute table, and a smoke run of the GEMM probe."""

import pytest

from benchmarks import flops
from benchmarks import gemm
from benchmarks import report
from benchmarks import results_md
from tests.benchmarks.test_bench_report import fake_results

# MiniLM at batch 32 x 128 tokens (T = 4096), rank 8, query and value.
DENSE = 2 * 4096 * (4 * 384**2 + 2 * 384 * 1536) * 6  # 86,973,087,744
ATTENTION = 2 * 2 * 32 * 128**2 * 384 * 6  # 4,831,838,208
POOLER = 2 * 32 * 384**2  # 9,437,184
HEAD = 2 * 32 * 384 * 2  # 49,152
ADAPTERS = 2 * 4096 * (384 * 8 + 8 * 384) * 2 * 6  # 603,979,776
REBUILD = 2 * 384**2 * 8 * 2 * 6  # 28,311,552
ADAPTED = 2 * 4096 * 384**2 * 2 * 6  # 14,495,514,624


def test_forward_parts_of_minilm():
    assert flops.forward_parts(32, 128, 8) == {
        "dense": 86_973_087_744, "attention": 4_831_838_208, "pooler": 9_437_184,
        "head": 49_152, "adapters": 603_979_776, "rebuild": 28_311_552,
        "adapted": 14_495_514_624}
    assert flops.forward_parts(32, 128, 8) == {
        "dense": DENSE, "attention": ATTENTION, "pooler": POOLER, "head": HEAD,
        "adapters": ADAPTERS, "rebuild": REBUILD, "adapted": ADAPTED}
    assert flops.forward_flops(32, 128) == 91_814_412_288
    assert flops.forward_flops(32, 128, 8) == 91_814_412_288 + ADAPTERS


@pytest.mark.parametrize("config, expected", [
    # Everything trained: forward, input gradients, weight gradients.
    ("full", 275_443_236_864),
    # Frozen kernels: forward + input gradients; factors and head trained.
    ("klr_lora", 190_272_651_264),
    ("peft_lora", 190_272_651_264),
    # The rebuilt query / value kernels get weight gradients.
    ("keras_lora", 203_041_161_216),
])
def test_step_flops_per_configuration(config, expected):
    assert flops.step_flops(config, 32, 128, 8) == expected
    by_formula = {
        "full": 3 * (DENSE + ATTENTION + POOLER + HEAD),
        "klr_lora": 2 * DENSE + 3 * ATTENTION + 2 * POOLER + 3 * HEAD + 3 * ADAPTERS,
        "keras_lora": (2 * DENSE + ADAPTED + 3 * ATTENTION + 2 * POOLER + 3 * HEAD
                       + 3 * REBUILD),
    }
    assert expected == by_formula.get(config, by_formula["klr_lora"])


def test_attention_grows_with_the_square_of_the_length():
    short = flops.forward_parts(4, 16)["attention"]
    assert flops.forward_parts(4, 32)["attention"] == 4 * short
    assert flops.forward_parts(4, 32)["dense"] == 2 * flops.forward_parts(4, 16)["dense"]
    shapes = [(32, 24), (32, 48), (5, 16)]
    assert flops.batches_flops("klr_lora", shapes, 8) == sum(
        flops.step_flops("klr_lora", rows, length, 8) for rows, length in shapes)


def test_unknown_config_and_share_of_gemm():
    with pytest.raises(ValueError, match=r"^Unrecognized config='lora'\. Supported "
                       r"configs are: \['full', 'klr_lora', 'keras_lora', 'peft_lora'\]$"):
        flops.step_flops("lora", 32, 128)
    assert flops.share_of_gemm(200e9, 2.0, 400e9) == 0.25
    assert flops.share_of_gemm(200e9, 2.0, None) is None


def _with_compute(results):
    results["gemm"] = {
        "shape": [4096, 384, 1536], "repeats": 10,
        "dtypes": {"float32": {"gflops_median": 400.0, "gflops_best": 450.0},
                   "bfloat16": {"gflops_median": 700.0, "gflops_best": 800.0}}}
    step = results["train_step"]["klr_lora"]
    step["step"]["n"] = 10
    step["step_cpu_seconds"] = {"user": 12.0, "system": 1.5}
    results["finetune_epoch"] = {
        "train_seconds": 100.0, "total_seconds": 130.0, "steps": 88,
        "epoch_flops": 8.8e12, "padded_tokens": 135_168, "real_tokens": 70_000,
        "stage_cpu_seconds": {"data": {"user": 2.0, "system": 0.5},
                              "train": {"user": 180.0, "system": 17.5}},
        "examples": {"train": 2800, "validation": 400}, "batch_size": 32,
        "sequence_length": 64, "precision": {"train": "float32"}}
    results["compute"] = report.compute_rows(results)
    results["targets"] = report.targets(results, results["ratios"])
    return results


def test_compute_rows_and_table_have_exact_numbers():
    results = _with_compute(fake_results())
    compute = results["compute"]
    assert compute["gemm_gflops_per_s"] == 400.0
    lora = compute["rows"]["klr_lora"]
    assert lora["flops_per_step"] == 190_272_651_264
    assert lora["tokens_per_s"] == pytest.approx(4096 / 0.7)
    assert lora["share_of_gemm"] == pytest.approx(190.272651264 / 0.7 / 400)
    # Against the probe's best repeat too (450 GFLOP/s).
    assert compute["gemm_best_gflops_per_s"] == 450.0
    assert lora["share_of_gemm_best"] == pytest.approx(190.272651264 / 0.7 / 450)
    assert (lora["cpu_user_s_per_step"], lora["cpu_system_s_per_step"]) == (1.2, 0.15)
    assert lora["system_share"] == pytest.approx(1.5 / 13.5)
    epoch = compute["rows"]["finetune_epoch"]
    assert epoch["flops_per_step"] == 1e11 and epoch["gflops_per_s"] == 88.0
    assert epoch["pipeline_system_share"] == pytest.approx(18 / 200)
    # Configurations without CPU figures show dashes.
    assert compute["rows"]["full"]["system_share"] is None

    table = report.compute_table(results).splitlines()
    assert table[0] == ("| configuration | GFLOP/step | tokens/s | GFLOP/s "
                        "| of GEMM (median) | of GEMM (best) "
                        "| CPU user s/step | CPU system s/step | system share |")
    assert table[3] == ("| (b) keras_lowrank LoRA | 190.3 | 5,851 | 271.8 | 68.0% "
                        "| 60.4% | 1.200 | 0.150 | 11.1% |")
    assert table[4] == ("| (c) keras-hub enable_lora | 203.0 | 5,120 | 253.8 | 63.5% "
                        "| 56.4% | - | - | - |")
    assert table[-1] == ("| finetune pipeline, 1 epoch (train stage) | 100.0 | 1,352 "
                         "| 88.0 | 22.0% | 19.6% | 2.045 | 0.199 | 8.9% |")
    assert report.gemm_line(results) == (
        "TensorFlow GEMM on this machine, `(4096, 384) @ (384, 1536)`, 10 timed "
        "repeats: float32 400.0 GFLOP/s median (450.0 best); bfloat16 700.0 "
        "GFLOP/s median (800.0 best). Shares below are of the float32 median "
        "and of its best repeat (a median moved 17% between two idle runs).")
    met = {t["name"]: (t["value"], t["met"]) for t in results["targets"]}
    assert met["finetune_system_cpu_share"] == (pytest.approx(0.09), True)

    text = results_md.render(results)
    assert "## FLOPs, throughput and CPU time" in text
    assert ("CPU by stage, user / system seconds: data 2.0 / 0.5, train 180.0 / "
            "17.5; system 9.0% of the pipeline's CPU time (target < 10%).") in text
    assert "| finetune_system_cpu_share | 0.090 | < 0.10 | yes |" in text


def test_gemm_probe_counts_and_times_tiny_matmuls():
    result = gemm.gemm_throughput(8, 4, 16, repeats=3, dtype="float32")
    assert result["flops"] == 2 * 8 * 4 * 16
    assert len(result["seconds"]) == 3 and min(result["seconds"]) > 0
    assert result["gflops_median"] == pytest.approx(
        1024 / result["median_s"] / 1e9)
    assert result["gflops_best"] >= result["gflops_median"] > 0
    assert gemm.gemm_throughput(8, 4, 16, repeats=1, dtype="bfloat16")["flops"] == 1024


def test_finetune_epoch_counts_the_batches_the_pipeline_trains_on():
    import numpy as np

    from benchmarks import finetune_epoch
    from keras_lowrank.finetune import batching

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 17, 23)  # (23,) tokens per row, at most 16
    mask = (np.arange(16)[None, :] < lengths[:, None]).astype("int32")  # (23, 16)
    inputs = {"token_ids": mask * 7, "padding_mask": mask}
    labels = np.zeros(23, "int64")
    trained = [(int(x["token_ids"].shape[0]), int(x["token_ids"].shape[1]))
               for x, _ in batching.training_dataset(inputs, labels, 4, seed=3)]
    assert finetune_epoch.epoch_shapes(lengths, 4, seed=3, full=16) == trained
    evaluated = [(int(x["token_ids"].shape[0]), int(x["token_ids"].shape[1]))
                 for x, _ in batching.evaluation_dataset(inputs, labels, 4)]
    assert finetune_epoch.evaluation_shapes(lengths, 4, full=16) == evaluated
    assert sum(rows for rows, _ in trained) == 23
