"""`keras-lowrank finetune --base-quantization / --quantize-frozen /
--adaptive-rank / --adaptive-initial-rank`, on both tasks: the classifier on
the tiny BERT preset, the causal LM on the tiny Llama folder; the report's
numbers, the rank-allocation plot, an export of a quantized AdaLoRA run,
and bad input refused in one line with nothing written."""

import json
import os

import pytest

import keras_lowrank as klr
from keras_lowrank.cli.main import main
from keras_lowrank.finetune import FinetuneOptions
from keras_lowrank.lm_finetune import LMFinetuneOptions
from tests.finetune.conftest import op_determinism_restored  # noqa: F401 (autouse)
from tests.finetune.conftest import tiny_preset  # noqa: F401 (fixture)
from tests.finetune.conftest import tiny_train_csv  # noqa: F401 (fixture)
from tests.lm_finetune.conftest import tiny_folder  # noqa: F401 (fixture)
from tests.lm_finetune.conftest import toy_records
from tests.lm_finetune.conftest import write_jsonl

PNG = b"\x89PNG\r\n\x1a\n"
# The tiny BERT preset: hidden 16, 2 blocks; LoRA on query and value, each
# a 16 -> 16 kernel; the 2-class head (16 x 2 + 2) stays trainable.
BERT_HIDDEN, BERT_ADAPTED, BERT_HEAD = 16, 4, 16 * 2 + 2
BERT_FLOAT_BYTES = 24_136  # 6,034 float32 parameters
# The tiny Llama: per block q, o 64 -> 64; k, v 64 -> 32; gate, up
# 64 -> 128; down 128 -> 64; 2 blocks; 90,880 float32 parameters.
LLAMA_KERNELS = 2 * [(64, 64), (64, 32), (64, 32), (64, 64),
                     (64, 128), (64, 128), (128, 64)]
LLAMA_FLOAT_BYTES = 363_520


def int8_saving(kernels):
    """Bytes an int8 kernel saves: 4 bytes a value become 1, plus a float32
    scale per output column."""
    return sum(4 * i * o - (i * o + 4 * o) for i, o in kernels)


def read_report(out):
    with open(os.path.join(out, "report.json"), encoding="utf-8") as file:
        return json.load(file)


def classifier_run(tmp_path, preset, train, *argv):
    out = str(tmp_path / "run")
    code = main(["finetune", "--quiet", "--train", train, "--model", preset,
                 "--sequence-length", "12", "--batch-size", "8", "--cache-dir",
                 str(tmp_path / "cache"), "--out", out, "--no-phone-artifacts",
                 *argv])
    return code, out


def test_classifier_on_an_int8_base_reports_its_weight_bytes(
        tmp_path, tiny_preset, tiny_train_csv):
    code, out = classifier_run(tmp_path, tiny_preset, tiny_train_csv,
                               "--export", "none", "--epochs", "1",
                               "--base-quantization", "int8")
    assert code == 0
    report = read_report(out)
    assert (report["base_quantization"], report["quantize_frozen"]) == ("int8", "adapted")
    assert report["options"]["base_quantization"] == "int8"
    assert report["base_calibration"] is None
    lora = BERT_ADAPTED * 8 * (BERT_HIDDEN + BERT_HIDDEN)  # rank 8
    assert report["trainable_params"] == lora + BERT_HEAD == 1_058
    # The float base is counted on the model the run loaded, as base_bytes.
    assert report["weight_bytes_float_base"] == report["base_bytes"] == BERT_FLOAT_BYTES
    assert report["weight_bytes"] == (
        BERT_FLOAT_BYTES - int8_saving(BERT_ADAPTED * [(16, 16)]) + 4 * lora) == 25_416
    assert report["adapter_ranks"] == {
        f"transformer_layer_{i}/self_attention_layer/{name}": 8
        for i in range(2) for name in ("query", "value")}
    assert report["adaptive"] is None
    assert report["peak_rss_bytes"] > 100 * 2**20
    assert sorted(os.listdir(out)) == [
        "adapters.safetensors", "report.json", "training_curves.png"]


def test_classifier_adalora_on_an_int4_base_exports_and_plots_its_ranks(
        tmp_path, tiny_preset, tiny_train_csv):
    code, out = classifier_run(
        tmp_path, tiny_preset, tiny_train_csv, "--export", "onnx", "--epochs", "2",
        "--base-quantization", "int4", "--quantize-frozen", "all",
        "--adaptive-rank", "2")
    assert code == 0
    report = read_report(out)
    assert (report["base_quantization"], report["quantize_frozen"]) == ("int4", "all")
    assert report["base_calibration"] == 128  # GPTQ on the training examples
    # 28 training examples, batches of 8: 4 steps an epoch, 2 epochs, all
    # run (no early stopping under AdaLoRA); warmup 10%, final 30%, floored.
    assert report["adaptive"] == {
        "target_rank": 2, "total_steps": 8, "warmup_steps": 0, "final_steps": 2,
        "interval": 1, "beta1": 0.85, "beta2": 0.85, "orth_reg_weight": 0.5,
        "initial_rank": 3, "adapters": 4, "initial_budget": 12,
        "target_budget": 8, "final_budget": 8}
    assert report["epochs_run"] == report["best_epoch"] == 2
    ranks = report["adapter_ranks"]
    assert len(ranks) == 4 and sum(ranks.values()) == 8
    assert all(0 <= rank <= 3 for rank in ranks.values())
    # P (16 x 3), Λ (3,), Q (3 x 16) per adapter, and the head.
    assert report["trainable_params"] == 4 * (16 * 3 + 3 + 3 * 16) + BERT_HEAD == 430
    assert report["weight_bytes"] < 0.6 * report["weight_bytes_float_base"]
    # The export merges the quantized base into a float model.
    assert report["onnx_max_abs_diff"] < 1e-4
    assert report["onnx_test_accuracy"] == report["test_accuracy"]
    assert report["files"]["rank_allocation"] == os.path.join(out, "rank_allocation.png")
    with open(os.path.join(out, "rank_allocation.png"), "rb") as file:
        assert file.read(8) == PNG
    assert sorted(os.listdir(out)) == [
        "adapters.safetensors", "model.onnx", "rank_allocation.png", "report.json",
        "training_curves.png"]


def test_causal_lm_int4_base_is_fitted_to_its_training_examples(tmp_path, tiny_folder):
    train = write_jsonl(tmp_path / "toy.jsonl", toy_records(20))
    reports = {}
    for calibration in ("128", "0"):
        out = str(tmp_path / f"run-{calibration}")
        code = main(["finetune", "--task", "causal-lm", "--model", tiny_folder,
                     "--train", train, "--max-steps", "2", "--eval-every", "2",
                     "--batch-size", "4", "--max-eval-examples", "2", "--samples", "1",
                     "--export", "none", "--quiet", "--out", out,
                     "--base-quantization", "int4", "--base-calibration", calibration])
        assert code == 0
        reports[calibration] = read_report(out)
    assert [r["base_calibration"] for r in reports.values()] == [128, 0]
    # GPTQ against the training examples, or round to nearest: other int4
    # kernels, so another held-out loss before training, at the same size.
    assert reports["128"]["heldout_loss_before"] != reports["0"]["heldout_loss_before"]
    assert reports["128"]["weight_bytes"] == reports["0"]["weight_bytes"]


def test_causal_lm_adalora_on_an_int8_base(tmp_path, tiny_folder):
    train = write_jsonl(tmp_path / "toy.jsonl", toy_records(20))
    out = str(tmp_path / "run")
    code = main(["finetune", "--task", "causal-lm", "--model", tiny_folder,
                 "--train", train, "--max-steps", "4", "--eval-every", "2",
                 "--batch-size", "4", "--max-eval-examples", "2", "--samples", "1",
                 "--export", "none", "--quiet", "--out", out,
                 "--base-quantization", "int8", "--adaptive-rank", "2"])
    assert code == 0
    report = read_report(out)
    assert (report["base_quantization"], report["quantize_frozen"]) == ("int8", "adapted")
    assert report["adaptive"] == {
        "target_rank": 2, "total_steps": 4, "warmup_steps": 0, "final_steps": 1,
        "interval": 1, "beta1": 0.85, "beta2": 0.85, "orth_reg_weight": 0.5,
        "initial_rank": 3, "adapters": 14, "initial_budget": 42,
        "target_budget": 28, "final_budget": 28}
    ranks = report["adapter_ranks"]
    assert len(ranks) == 14 and sum(ranks.values()) == 28
    assert report["steps_run"] == report["best_step"] == 4
    adalora = sum(3 * (i + o) + 3 for i, o in LLAMA_KERNELS)
    assert report["trainable_params"] == adalora == 6_186
    assert report["weight_bytes_float_base"] == LLAMA_FLOAT_BYTES
    # The factors in float32, and per adapter its mask (3) and ranknum (1).
    assert report["weight_bytes"] == (
        LLAMA_FLOAT_BYTES - int8_saving(LLAMA_KERNELS) + 4 * adalora
        + 14 * 4 * (3 + 1)) == 171_400
    assert report["peak_rss_bytes"] > 100 * 2**20
    assert sorted(os.listdir(out)) == [
        "adapters.safetensors", "rank_allocation.png", "report.json",
        "training_curves.png"]
    # The adapter file holds the surviving triplets only.
    float_lm = klr.load_adapters(_llama(tiny_folder), os.path.join(out, "adapters.safetensors"))
    assert {k: v for k, v in klr.adapter_ranks(float_lm).items()} == \
        {k: v for k, v in ranks.items() if v}


def _llama(folder):
    from keras_lowrank.lm_finetune.causal_lm_loading import load_causal_lm

    return load_causal_lm(folder)


@pytest.mark.parametrize("argv, message", [
    (["--adaptive-rank", "4", "--adaptive-initial-rank", "3"],
     "adaptive_rank, the average rank AdaLoRA ends at, must be at most "
     "adaptive_initial_rank, the rank it starts at. Received: adaptive_rank=4, "
     "adaptive_initial_rank=3"),
    (["--adaptive-initial-rank", "4"],
     "adaptive_initial_rank is AdaLoRA's starting rank, and needs adaptive_rank, "
     "its target. Received: adaptive_initial_rank=4 with adaptive_rank=None"),
    (["--rank", "16", "--adaptive-rank", "4"],
     "--rank is the rank of plain LoRA; AdaLoRA's starting rank is "
     "--adaptive-initial-rank. Received: --rank 16 with --adaptive-rank 4. "
     "Pass --adaptive-initial-rank 16 instead of --rank 16"),
    (["--adaptive-rank", "0"],
     "adaptive_rank must be a positive integer. Received: adaptive_rank=0"),
    (["--quantize-frozen", "all"],
     "quantize_frozen says which frozen layers a base_quantization quantizes, "
     "but none was given. Received: quantize_frozen='all' with "
     "base_quantization=None. Pass base_quantization, one of ['int8', 'int4']"),
    (["--base-quantization", "int8", "--distribute", "mirrored"],
     "base_quantization cannot be combined with distribute yet: the library "
     "does not lay out a quantized base over devices. Received: "
     "base_quantization='int8' with distribute='mirrored'. Leave one of them out"),
    (["--adaptive-rank", "4", "--distribute", "multi-worker"],
     "adaptive_rank cannot be combined with distribute yet: AdaLoRA's callback "
     "is not tested under a distribution strategy. Received: adaptive_rank=4 "
     "with distribute='multi-worker'. Leave one of them out"),
    (["--base-quantization", "int4", "--precision", "auto"],
     "base_quantization is not yet supported with precision other than "
     "'float32' (only float32 training is tested). Received: "
     "base_quantization='int4' with precision='auto'. Leave precision at "
     "'float32'"),
    (["--task", "causal-lm", "--adaptive-rank", "6", "--adaptive-initial-rank", "5"],
     "adaptive_rank, the average rank AdaLoRA ends at, must be at most"),
    (["--task", "causal-lm", "--quantize-frozen", "adapted"],
     "quantize_frozen says which frozen layers a base_quantization quantizes"),
    (["--base-quantization", "int8", "--base-calibration", "64"],
     "base_calibration is the number of training examples an int4 base is "
     "fitted to (GPTQ). Received: base_calibration=64 with "
     "base_quantization='int8'. Pass base_quantization='int4', or leave "
     "base_calibration out."),
    (["--task", "causal-lm", "--base-calibration", "64"],
     "base_calibration is the number of training examples an int4 base is "
     "fitted to (GPTQ). Received: base_calibration=64 with base_quantization=None"),
    (["--base-quantization", "int4", "--base-calibration", "-1"],
     "base_calibration must be a whole number of examples >= 0 (0 rounds the "
     "int4 kernels to nearest). Received: base_calibration=-1"),
])
def test_bad_combinations_are_one_line_and_write_nothing(tmp_path, capsys, argv,
                                                         message):
    code = main(["finetune", *argv, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith(f"keras-lowrank finetune: error: {message}")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("argv, message", [
    (["--base-quantization", "int2"],
     "argument --base-quantization: invalid choice: 'int2'"),
    (["--quantize-frozen", "some"],
     "argument --quantize-frozen: invalid choice: 'some'"),
    (["--adaptive-rank", "two"],
     "argument --adaptive-rank: invalid int value: 'two'"),
])
def test_unknown_values_are_argparse_errors(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit:
        main(["finetune", *argv, "--out", str(tmp_path / "run")])
    assert exit.value.code == 2
    assert message in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("options_class", [FinetuneOptions, LMFinetuneOptions])
def test_options_resolve_the_initial_rank_and_quantize_frozen(options_class):
    plain = options_class()
    assert (plain.base_quantization, plain.quantize_frozen) == (None, None)
    assert (plain.adaptive_rank, plain.adaptive_initial_rank) == (None, None)
    int4 = options_class(base_quantization="int4")
    assert int4.quantize_frozen == "adapted"
    # An int4 base is fitted to 128 training examples (GPTQ) unless told;
    # 0 rounds to nearest; other bases have none.
    assert (int4.base_calibration, plain.base_calibration) == (128, None)
    assert options_class(base_quantization="int8").base_calibration is None
    nearest = options_class(base_quantization="int4", base_calibration=0)
    assert nearest.base_calibration == 0 and nearest.to_dict()["base_calibration"] == 0
    # 1.5 x the target, rounded up; the adapters start at it (`rank`).
    for target, initial in ((8, 12), (3, 5), (1, 2)):
        adaptive = options_class(adaptive_rank=target)
        assert (adaptive.adaptive_initial_rank, adaptive.rank) == (initial, initial)
    given = options_class(adaptive_rank=4, adaptive_initial_rank=4)
    assert (given.adaptive_initial_rank, given.rank) == (4, 4)
    assert given.to_dict()["adaptive_initial_rank"] == 4
