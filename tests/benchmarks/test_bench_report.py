"""The bench's pure parts: ratios, targets, FLOPs, trace naming, RESULTS.md.

`make bench` itself takes ~25 minutes and even `--quick` several (each
configuration loads MiniLM in its own process), so the end-to-end smoke run
is opt-in: `KLR_BENCH_SMOKE=1 pytest tests/benchmarks`.
"""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import recipe_epoch
from benchmarks import report
from benchmarks import results_md
from benchmarks import trace_summary
from benchmarks.profile_step import step_flops
from benchmarks.settings import Settings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAYER = "bert_text_classifier_1/bert_backbone_1/transformer_layer_2_1"


def _step(median, trainable, rss):
    return {"step": {"median_s": median, "min_s": median, "max_s": median,
                     "mean_s": median, "n": 1},
            "trainable_params": trainable, "peak_rss_bytes": rss}


def _latency(base, merged):
    return {name: {"median_s": value} for name, value in
            (("base", base), ("adapted", base * 1.1), ("merged", merged))}


def _export(name, size, accuracy, runtime="litert", **more):
    return {"name": name, "size": size, "accuracy": accuracy, "keras": 0.515,
            "refused": False, "runtime": runtime, "latency_by_length": {
                "median": {"tokens": 21, "ms": 4.5}, "max": {"tokens": 64, "ms": 12.25}},
            **more}


def fake_results():
    micro = {"shape": [32, 128, 384], "rank": 8,
             "median_ms": {"frozen": 18.0, "klr": 24.0, "klr_flat": 21.0, "keras": 28.0},
             "overhead_ms": {"klr": 6.0, "klr_flat": 3.0, "keras": 10.0}}
    results = {
        "command": "python benchmarks/run.py", "note": "TRIAL",
        "settings": json.loads(Settings().to_json()),
        "machine": {"cpu_model": "cpu", "cores_usable": 2, "ram_bytes": 2**34,
                    "python": "3.11", "date": "today", "git_commit": "abc",
                    "versions": {"tensorflow": "2.21.0", "keras": "3.15.1",
                                 "keras-hub": "0.32.0"},
                    "load_average_at_start": [0.1, 0.1, 0.1]},
        "wall_s": 1200.0,
        "train_step": {
            "full": _step(1.0, 22_713_986, 3_000_000_000),
            "klr_lora": _step(0.7, 74_498, 2_400_000_000),
            "keras_lora": _step(0.8, 450_818, 2_500_000_000),
            "peft_lora": {"skipped": "No module named 'torch'"},
        },
        "accuracy": {c: {"learning_rate": 1e-3, "test_accuracy": 0.8,
                         "fit_s": 90.0, "fit_s_per_step": 0.5}
                     for c in ("full", "klr_lora", "keras_lora")},
        "latency": {"method": "tf.function", "sequence_length": 128,
                    "merged_vs_adapted_max_abs_diff": 1e-7,
                    "batches": {"1": _latency(0.010, 0.0101),
                                "32": _latency(0.300, 0.309)}},
        "exports": {"sequence_length": 64, "eval_examples": 200,
                    "calibration_examples": 256, "formats": {
            "tflite": _export("tflite/float32", 91e6, 0.515),
            "tflite_int8": {"name": "tflite/int8", "accuracy": 0.49,
                            "keras": 0.515, "refused": True},
            "tflite_text_classifier": _export(
                "tflite+text_classifier/float32", 90.5e6, 0.515,
                labels_equal=199, eval_examples=200, runtime="mediapipe"),
            "onnx": {"error": "ValueError: boom"}}},
        "profile": {
            "phases_ms": {"lora_forward": 300.0, "lora_forward_backward": 680.0,
                          "lora_step": 700.0, "floor_forward": 290.0,
                          "floor_forward_backward": 640.0, "floor_step": 650.0,
                          "no_dropout_step": 600.0},
            "trace": {"op_ms_per_step": 1000.0, "by_phase": {"forward": 450.0},
                      "by_type": {"MatMul": 300.0, "BatchMatMulV2": 500.0},
                      "by_component": {"query": 80.0, "key": 60.0},
                      "adapter_ops_ms": 30.0, "adapter_minus_key_ms": 40.0},
            "adapter_microbench": micro,
            "flops": step_flops(32, 128, 8),
        },
    }
    results["ratios"] = report.ratios(results)
    results["targets"] = report.targets(results, results["ratios"])
    return results


def test_ratios_are_medians_and_peaks_divided():
    ratio = fake_results()["ratios"]
    assert ratio["lora_vs_full_step"] == pytest.approx(0.7)
    assert ratio["lora_vs_keras_builtin_step"] == pytest.approx(0.875)
    assert ratio["lora_vs_full_peak_rss"] == pytest.approx(0.8)
    assert ratio["merged_vs_base_latency"] == pytest.approx(1.03)
    assert ratio["merged_vs_base_latency_batch_1"] == pytest.approx(1.01)
    assert ratio["lora_vs_peft_step"] is None  # PEFT skipped


def test_targets_say_which_are_met():
    met = {t["name"]: t["met"] for t in fake_results()["targets"]}
    assert met == {
        "lora_vs_keras_builtin_step": True, "lora_vs_full_step": True,
        "lora_vs_full_peak_rss": True, "trainable_params": True,
        "merged_vs_base_latency": False, "merged_vs_base_latency_batch_1": True,
        "finetune_system_cpu_share": None,  # the pipeline did not run
        "finetune_vs_keras_recipe_epoch": None,  # nor the recipe
    }


def test_step_flops_of_minilm():
    flops = step_flops(32, 128, 8)
    # 6 blocks x 2 x 4096 tokens x (4 x 384^2 + 2 x 384 x 1536) multiply-adds,
    # the attention products, the pooler and the head (tests/benchmarks/test_flops.py)
    assert flops["forward"] == 86_973_087_744 + 4_831_838_208 + 9_437_184 + 49_152
    assert flops["lora_vs_full"] == pytest.approx(0.6908, abs=1e-4)
    assert flops["adapter_share_of_lora_step"] == pytest.approx(0.00953, abs=1e-5)


@pytest.mark.parametrize("name, component, adapter", [
    (f"{LAYER}/self_attention_layer_1/query_1/MatMul", "query", False),
    (f"gradient_tape/{LAYER}/self_attention_layer_1/value_1/MatMul_1/MatMul_1",
     "value", True),
    (f"{LAYER}/self_attention_layer_1/key_1/Add", "key", False),
    (f"gradient_tape/{LAYER}/self_attention_layer_1/MatMul/x", "attention_core", False),
    (f"{LAYER}/feedforward_intermediate_dense_1/MatMul",
     "feedforward_intermediate_dense", False),
    ("bert_text_classifier_1/bert_backbone_1/embeddings_layer_norm_1/mul",
     "embeddings_layer_norm", False),
])
def test_trace_names_map_to_layers(name, component, adapter):
    assert trace_summary.component_of(name) == component
    assert trace_summary.is_adapter_op(name) is adapter
    assert trace_summary.phase_of(name) == (
        "backward" if name.startswith("gradient_tape/") else "forward")


def test_results_md_has_every_table_and_the_skips():
    text = results_md.render(fake_results())
    for heading in ("## Targets", "## Training step", "## Test accuracy on MR",
                    "## Inference latency", "## Exports of the merged model",
                    "### What bounds the LoRA step"):
        assert heading in text
    assert "| merged_vs_base_latency | 1.030 | within 2% | **no** |" in text
    assert "skipped: No module named 'torch'" in text
    assert "failed: ValueError: boom" in text
    assert "> **TRIAL**" in text
    # (6.0 - 3.0) ms x 12 adapters
    assert "would save about 36 ms/step" in text


def test_results_md_sets_the_quantized_bases_against_the_float_one():
    results = fake_results()
    results["quantized_step"] = {
        "classifier": {"error": "no result; log: quantized_step_classifier.log: boom"},
        "causal_lm": {
            "model": "smollm2", "batch_shape": [8, 64], "rank": 8,
            "targets": "all-linear", "bases": {
                name: {"weight_bytes": size, "trainable_params": 4_884_480,
                       "step": {"median_s": step}}
                for name, size, step in (("float32", 557_900_000, 2.0),
                                         ("int4", 86_000_000, 2.9),
                                         ("int8", 150_600_000, 2.3))}}}
    text = results_md.render(results)
    assert "## On an int8 / int4 base" in text
    assert "Classifier: not measured: no result; log: quantized_step_classifier.log: boom" in text
    assert "LoRA rank 8 on all-linear" in text and "batch 8 x 64 tokens" in text
    assert "| float32 | 558 | 1.000 | 4,884,480 | 2.000 | 1.00 |" in text
    assert "| int8 | 151 | 0.270 | 4,884,480 | 2.300 | 1.15 |" in text
    assert "| int4 | 86 | 0.154 | 4,884,480 | 2.900 | 1.45 |" in text
    assert text.index("| int8 |") < text.index("| int4 |")  # float, int8, int4
    del results["quantized_step"]  # a results.json from before the section
    text = results_md.render(results)
    assert "Classifier: not measured: not run" in text
    assert "Causal LM: not measured: not run" in text


def test_what_dropout_costs_and_the_gemm_share_without_it():
    results = fake_results()
    assert results_md.dropout_sentence(results) == (
        "Dropout (Keras' `Dropout` layers of the model, rate 0.1 on the "
        "attention probabilities and hidden states: random numbers, masks and "
        "scaling, forward and backward) costs 100 ms of the LoRA step (14%): "
        "the same step with every Dropout layer at rate 0 takes 600 ms.")
    results["gemm"] = {"shape": [4096, 384, 1536], "repeats": 10, "dtypes": {
        "float32": {"gflops_median": 400.0, "gflops_best": 410.0}}}
    lora = results["profile"]["flops"]["lora_step"]  # 190.3 GFLOP
    with_dropout, without = lora / 0.7 / 400e9, lora / 0.6 / 400e9
    assert (round(100 * with_dropout), round(100 * without)) == (68, 79)
    assert results_md.dropout_sentence(results).endswith(
        "At this run's float32 GEMM throughput (median) the LoRA step runs at "
        "68% of it in the profile, and would run at 79% with dropout off: the "
        "70% target lies beyond the same model with its dropout.")
    assert results_md.dropout_sentence(results) in results_md.render(results)
    # The verdict follows the numbers: a slower GEMM probe, a faster one.
    results["gemm"]["dtypes"]["float32"]["gflops_median"] = 250.0
    assert results_md.dropout_sentence(results).endswith(
        "runs at 109% of it in the profile, and would run at 127% with dropout "
        "off: the 70% target is met in this run.")
    results["gemm"]["dtypes"]["float32"]["gflops_median"] = 500.0
    assert results_md.dropout_sentence(results).endswith(
        "runs at 54% of it in the profile, and would run at 63% with dropout "
        "off: the 70% target lies beyond even the step without dropout.")
    del results["profile"]["phases_ms"]["no_dropout_step"]  # an earlier run's
    assert results_md.dropout_sentence(results) is None


def test_results_md_export_table_has_accuracy_next_to_keras():
    results = fake_results()
    text = results_md.render(results)
    assert "judged on the first 200 MR test sentences (capped for time" in text
    assert "calibrated modes calibrate on 256 training sentences" in text
    lines = text.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("| export |")))
    # Settings order (tflite, tflite_int8, ..., onnx), not results.json's.
    assert lines[header + 2:header + 6] == [
        "| tflite | tflite/float32 | 91.0 | 4.50 ms at 21 | 12.25 ms at 64 | "
        "0.5150 (+0.00 pt) | 0.5150 | - | litert |",
        "| tflite_int8 | tflite/int8 | - | - | - | 0.4900 (-2.50 pt) **refused** "
        "| 0.5150 | - | - |",
        "| tflite_text_classifier | tflite+text_classifier/float32 | 90.5 | "
        "4.50 ms at 21 | 12.25 ms at 64 | 0.5150 (+0.00 pt) | 0.5150 | 199/200 "
        "| mediapipe |",
        "| onnx | failed: ValueError: boom |  |  |  |  |  |  |  |",
    ]
    # A results.json from before these columns renders its own table.
    results["exports"] = {"sequence_length": 128, "formats": {"tflite": {
        "size_bytes": 91e6, "latency_ms_batch_1": 9.0, "max_abs_diff": 1e-7,
        "runtime": "litert"}}}
    text = results_md.render(results)
    assert "latency at batch 1, sequence length 128." in text
    assert "| tflite | 91.0 | 9.00 | 1.00e-07 | litert |" in text


def with_recipe_epoch(train_seconds=54.0, finetune_accuracy=0.83,
                      fit_seconds=100.0, recipe_accuracy=0.82):
    """`fake_results` with both one-epoch children: 2,800 rows, batch 32."""
    results = fake_results()
    results["finetune_epoch"] = {
        "train_seconds": train_seconds, "total_seconds": 80.0, "steps": 88,
        "padded_tokens": 95_744, "real_tokens": 70_000, "epoch_flops": 88e12,
        "stage_cpu_seconds": {"train": {"user": 100.0, "system": 5.0}},
        "examples": {"train": 2_800, "validation": 400}, "batch_size": 32,
        "sequence_length": 64, "precision": {"train": "float32"},
        "test_accuracy": finetune_accuracy, "test_examples": 800}
    results["keras_recipe_epoch"] = {
        "fit_seconds": fit_seconds, "tokenize_seconds": 1.5, "steps": 88,
        "padded_tokens": 2_800 * 64, "real_tokens": 70_000,
        "test_accuracy": recipe_accuracy}
    results["ratios"] = report.ratios(results)
    results["targets"] = report.targets(results, results["ratios"])
    return results


def _recipe_check(results):
    return next(t for t in results["targets"]
                if t["name"] == "finetune_vs_keras_recipe_epoch")


def test_finetune_epoch_against_keras_recipe_ratio_and_target():
    results = with_recipe_epoch()
    assert results["ratios"]["finetune_vs_keras_recipe_epoch"] == pytest.approx(0.54)
    check = _recipe_check(results)
    assert check["value"] == pytest.approx(0.54)
    assert check["target"] == "<= 0.60, accuracy >= the recipe's"
    assert check["met"] is True
    # Faster, but less accurate: not met.
    assert _recipe_check(with_recipe_epoch(finetune_accuracy=0.81))["met"] is False
    # As accurate, but 0.61x: not met.
    slow = with_recipe_epoch(train_seconds=61.0)
    assert slow["ratios"]["finetune_vs_keras_recipe_epoch"] == pytest.approx(0.61)
    assert _recipe_check(slow)["met"] is False
    # Both bounds inclusive: 0.60x at equal accuracy is met.
    edge = with_recipe_epoch(train_seconds=60.0, finetune_accuracy=0.82)
    assert _recipe_check(edge)["met"] is True
    # A finetune result without its test accuracy (an earlier run's): unknown.
    results = with_recipe_epoch()
    del results["finetune_epoch"]["test_accuracy"]
    results["targets"] = report.targets(results, results["ratios"])
    assert _recipe_check(results)["met"] is None


def test_results_md_sets_the_finetune_epoch_against_keras_recipe():
    text = results_md.render(with_recipe_epoch())
    assert recipe_epoch.HEADING in text
    assert ("| one epoch of MR | wall s | steps | padded tokens | real tokens | "
            "test accuracy | vs the recipe |") in text
    assert ("| `finetune` pipeline (batches padded to their longest row) | 54.0 | "
            "88 | 95,744 | 70,000 | 0.8300 | 0.54 |") in text
    assert ("| keras-hub recipe (`enable_lora`, every row padded) | 100.0 | 88 | "
            "179,200 | 70,000 | 0.8200 | 1.00 |") in text
    assert ("`finetune_vs_keras_recipe_epoch` = 0.540 (target <= 0.60, "
            "accuracy >= the recipe's): met.") in text
    assert "1.5 s when run alone" in text
    assert ("| finetune_vs_keras_recipe_epoch | 0.540 | <= 0.60, accuracy >= "
            "the recipe's | yes |") in text
    text = results_md.render(with_recipe_epoch(finetune_accuracy=0.81))
    assert "(target <= 0.60, accuracy >= the recipe's): **not met**." in text


def test_a_failed_or_missing_recipe_child_is_not_measured():
    results = with_recipe_epoch()
    results["keras_recipe_epoch"] = {"error": "no result; log: keras_recipe_epoch.log: boom"}
    results["ratios"] = report.ratios(results)
    results["targets"] = report.targets(results, results["ratios"])
    assert results["ratios"]["finetune_vs_keras_recipe_epoch"] is None
    assert _recipe_check(results)["met"] is None
    text = results_md.render(results)
    assert ("| keras-hub recipe (`enable_lora`, every row padded) | not measured: "
            "no result; log: keras_recipe_epoch.log: boom |  |  |  |  |  |") in text
    # The finetune row still shows, with no ratio to show.
    assert "| 54.0 | 88 | 95,744 | 70,000 | 0.8300 | - |" in text
    assert "`finetune_vs_keras_recipe_epoch` = - (target" in text
    assert "): not measured." in text
    # Neither child ran (fake_results): both rows say so.
    text = results_md.render(fake_results())
    assert text.count("not measured: not run |  |  |  |  |  |") == 2


@pytest.mark.skipif(not os.environ.get("KLR_BENCH_SMOKE"),
                    reason="several minutes; set KLR_BENCH_SMOKE=1 to run")
def test_quick_bench_runs_end_to_end(tmp_path):
    subprocess.run([sys.executable, "benchmarks/run.py", "--quick",
                    "--out-dir", str(tmp_path)], cwd=ROOT, check=True)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["train_step"]["klr_lora"]["trainable_params"] == 74_498
    assert results["errors"] == {}
    # The quick exports: a calibrated LiteRT int8 model and the MediaPipe
    # artifact, each judged on 32 MR test sentences next to Keras.
    exports = results["exports"]["formats"]
    assert set(exports) == {"tflite_int8", "tflite_text_classifier"}
    for entry in exports.values():
        assert entry["keras"] is not None and entry["accuracy"] is not None
        assert entry["refused"] or set(entry["latency_by_length"]) == {"median", "max"}
    assert exports["tflite_text_classifier"]["labels_equal"] == 32  # 99.5% of 32
    assert "### What bounds the LoRA step" in (tmp_path / "RESULTS.md").read_text()
