"""`keras-lowrank finetune --task causal-lm`: exit codes, one-line errors,
options of one task refused for the other."""

import os

import pytest

from keras_lowrank.cli.main import main
from keras_lowrank.lm_finetune import lm_pipeline
from tests.lm_finetune.conftest import toy_records
from tests.lm_finetune.conftest import write_jsonl


def run_cli(capsys, *argv):
    status = main(["finetune", *argv])
    return status, capsys.readouterr()


@pytest.mark.parametrize("argv, message", [
    (["--task", "causal-lm", "--epochs", "3"],
     "--epochs applies to --task classifier only. Received: --task causal-lm"),
    (["--task", "causal-lm", "--labels", "a", "b"],
     "--labels applies to --task classifier only"),
    (["--task", "causal-lm", "--startup-timeout", "60"],
     "--startup-timeout applies to --task classifier only"),
    (["--task", "causal-lm", "--no-phone-artifacts"],
     "--phone-artifacts applies to --task classifier only. Received: --task "
     "causal-lm with --no-phone-artifacts. Leave --phone-artifacts out, or "
     "pass --task classifier"),
    (["--startup-timeout", "60"],
     "startup_timeout is for distribute='multi-worker' (a one-machine run has "
     "no other worker to wait for). Received: startup_timeout=60.0 with "
     "distribute=None"),
    (["--max-steps", "5"],
     "--max-steps applies to --task causal-lm only. Received: --task classifier"),
    (["--task", "causal-lm", "--export", "savedmodel"],
     "Unrecognized or repeated export format in --export savedmodel. "
     "Supported formats are: ['tflite', 'onnx', 'litertlm', 'onnx_genai', "
     "'litertlm_lora', 'none'] (none: export nothing)"),
    (["--export", "litertlm"],
     "Unrecognized or repeated export format in --export litertlm. Supported "
     "formats are: ['tflite', 'onnx', 'none']"),
    (["--task", "causal-lm", "--max-steps", "0"],
     "max_steps must be a positive integer. Received: max_steps=0"),
    (["--task", "causal-lm", "--tflite-quantize", "float16"],
     "Unrecognized tflite_quantize='float16' for a generator. Supported "
     "values are: [None, 'dynamic']"),
    (["--tflite-keep-float", "feedforward_output_dense"],
     "--tflite-keep-float applies to --task causal-lm only. Received: --task "
     "classifier"),
    (["--task", "causal-lm", "--tflite-keep-float", ""],
     "tflite_keep_float must hold non-empty layer patterns. Received: "
     "tflite_keep_float=['']"),
])
def test_options_of_the_other_task(tmp_path, capsys, argv, message):
    status, output = run_cli(capsys, *argv, "--out", str(tmp_path / "run"))
    assert status == 2
    assert output.err.count("\n") == 1
    assert message in output.err
    assert not (tmp_path / "run").exists()


def test_bad_jsonl_line_exits_2_naming_file_and_line(tiny_folder, tmp_path, capsys):
    train = write_jsonl(tmp_path / "train.jsonl", toy_records(3) + ['{"prompt": '])
    status, output = run_cli(capsys, "--task", "causal-lm", "--model", tiny_folder,
                             "--train", train, "--out", str(tmp_path / "run"))
    assert status == 2
    assert output.err.startswith(
        f"keras-lowrank finetune: error: {train}:4: invalid JSON (")
    assert output.err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_empty_file_exits_2(tiny_folder, tmp_path, capsys):
    train = tmp_path / "empty.jsonl"
    train.write_text("")
    status, output = run_cli(capsys, "--task", "causal-lm", "--model", tiny_folder,
                             "--train", str(train), "--out", str(tmp_path / "run"))
    assert status == 2
    assert f"{train}: empty file, no examples" in output.err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, lm_mode, classifier_mode", [
    ([], None, "dynamic"),
    (["--tflite-quantize", "dynamic"], "dynamic", "dynamic"),
    (["--tflite-quantize", "none"], None, None),
])
def test_tflite_quantize_of_each_task(argv, lm_mode, classifier_mode):
    from keras_lowrank.cli import finetune_command
    from keras_lowrank.cli.main import build_parser
    from keras_lowrank.cli import lm_command

    args = build_parser()[0].parse_args(["finetune", *argv])
    assert lm_command.options_from_args(args).tflite_quantize == lm_mode
    assert finetune_command.options_from_args(args).tflite_quantize == classifier_mode


def test_tflite_keep_float_reaches_the_options():
    from keras_lowrank.cli.main import build_parser
    from keras_lowrank.cli import lm_command
    from keras_lowrank.lm_finetune.lm_finetune_options import DEFAULT_TFLITE_KEEP_FLOAT

    parse = build_parser()[0].parse_args
    options = lm_command.options_from_args(parse(
        ["finetune", "--task", "causal-lm", "--tflite-quantize", "dynamic",
         "--tflite-keep-float", "feedforward_output_dense", "token_embedding"]))
    assert options.tflite_keep_float == ("feedforward_output_dense", "token_embedding")
    default = lm_command.options_from_args(parse(["finetune", "--task", "causal-lm"]))
    assert default.tflite_keep_float == DEFAULT_TFLITE_KEEP_FLOAT
    assert default.to_dict()["tflite_keep_float"] == list(DEFAULT_TFLITE_KEEP_FLOAT)


@pytest.fixture
def lm_runs(monkeypatch):
    """`finetune_lm` replaced: the options each run got, nothing written."""
    runs = []

    def finetune_lm(options, log):
        runs.append(options)
        return {"exports": {}}

    monkeypatch.setattr(lm_pipeline, "finetune_lm", finetune_lm)
    return runs


@pytest.mark.parametrize("argv, field, typed", [
    (["--batch-size", "32"], "batch_size", 32),
    (["--sequence-length", "64"], "sequence_length", 64),
    (["--dropout", "0.1"], "dropout", 0.1),
    (["--export", "tflite", "onnx"], "export", ("tflite", "onnx")),
])
def test_a_shared_option_typed_is_kept_even_at_the_classifiers_default(
        lm_runs, tmp_path, capsys, argv, field, typed):
    from keras_lowrank.finetune import FinetuneOptions
    from keras_lowrank.lm_finetune import LMFinetuneOptions

    # The value typed is the classifier's default, not the causal LM's.
    assert getattr(FinetuneOptions(), field) == typed != getattr(
        LMFinetuneOptions(), field)
    out = tmp_path / "run"
    status, output = run_cli(capsys, "--task", "causal-lm", *argv, "--out", str(out))
    assert (status, output.err) == (0, "")
    [options] = lm_runs
    assert getattr(options, field) == typed
    assert options.out == str(out)
    assert not out.exists()


def test_precision_is_refused_for_a_causal_lm_whatever_its_value(
        lm_runs, tmp_path, capsys):
    for precision in ("float32", "bfloat16"):
        status, output = run_cli(capsys, "--task", "causal-lm", "--precision",
                                 precision, "--out", str(tmp_path / "run"))
        assert status == 2
        assert output.err == (
            "keras-lowrank finetune: error: --precision applies to --task "
            "classifier only. Received: --task causal-lm with --precision "
            f"{precision}. Leave --precision out, or pass --task classifier\n")
    assert lm_runs == []
    assert os.listdir(tmp_path) == []


def test_examples_longer_than_the_sequence_length_name_it_and_the_flag(
        tiny_folder, tmp_path, capsys):
    train = write_jsonl(tmp_path / "toy.jsonl", toy_records(20))
    status, output = run_cli(
        capsys, "--task", "causal-lm", "--model", tiny_folder, "--train", train,
        "--sequence-length", "8", "--export", "none", "--quiet",
        "--out", str(tmp_path / "run"))
    assert status == 2
    assert output.err.count("\n") == 1
    assert output.err.startswith(
        "keras-lowrank finetune: error: Fine-tuning needs training examples, "
        "but all 14 were dropped: none keeps a completion token within "
        "sequence_length=8 (the longest holds ")
    longest = int(output.err.split("the longest holds ")[1].split()[0])
    assert longest > 8
    assert output.err.endswith(
        "tokens, the chat template's included). Raise --sequence-length "
        f"(sequence_length=) to at least {longest}. Received: 0 train / 0 "
        "validation / 0 test\n")
    assert sorted(os.listdir(tmp_path)) == ["toy.jsonl"]


def test_the_llm_runtimes_are_kept_as_typed(lm_runs, tmp_path, capsys):
    out = tmp_path / "run"
    status, output = run_cli(capsys, "--task", "causal-lm", "--export", "onnx_genai",
                             "litertlm", "--tflite-quantize", "dynamic",
                             "--out", str(out))
    assert (status, output.err) == (0, "")
    status, output = run_cli(capsys, "--task", "causal-lm", "--export", "none",
                             "--out", str(out))
    assert (status, output.err) == (0, "")
    [options, nothing] = lm_runs
    assert options.export == ("onnx_genai", "litertlm")
    assert options.tflite_quantize == "dynamic"
    assert nothing.export == ()
    assert not out.exists()


def test_a_causal_lm_run_exits_0_and_measures_the_llm_runtimes(
        tiny_folder, tmp_path, capsys):
    import json

    train = write_jsonl(tmp_path / "toy.jsonl", toy_records(20))
    out = tmp_path / "run"
    status, output = run_cli(
        capsys, "--task", "causal-lm", "--model", tiny_folder, "--train", train,
        "--max-steps", "2", "--eval-every", "2", "--batch-size", "4",
        "--max-eval-examples", "2", "--export", "litertlm", "onnx_genai",
        "--export-max-length", "128", "--samples", "1", "--quiet",
        "--out", str(out))
    assert status == 0, output.err
    assert "[6/6] report ..." in output.out
    assert sorted(os.listdir(out)) == [
        "adapters.safetensors", "model.litertlm", "onnx_genai", "report.json",
        "training_curves.png"]
    assert sorted(os.listdir(out / "onnx_genai")) == [
        "genai_config.json", "model.onnx", "tokenizer.json", "tokenizer_config.json"]
    report = json.loads((out / "report.json").read_text())
    litertlm, genai = report["exports"]["litertlm"], report["exports"]["onnx_genai"]
    assert litertlm["path"] == str(out / "model.litertlm")
    assert litertlm["size_bytes"] == os.path.getsize(out / "model.litertlm")
    assert genai["path"] == str(out / "onnx_genai")
    assert genai["size_bytes"] == sum(
        os.path.getsize(out / "onnx_genai" / name) for name in genai["files"])
    # Checked on the run's first test prompts: GenAI token for token,
    # LiteRT-LM on text (its token split of the text may differ).
    assert genai["agreement"] == 1.0 and genai["tokens_compared"] > 0
    assert litertlm["prompts_matching"] == len(litertlm["prompt_lengths"]) > 0
    for exported in (litertlm, genai):
        assert exported["time_to_first_token_ms"] > 0
        assert exported["decode_tokens_per_s"] > 0
    # Test answers in GenAI from the run's ids; in LiteRT-LM from each
    # test prompt's user message, through its Conversation API.
    # Float32 artifacts answer as Keras does.
    assert genai["test_accuracy"] == litertlm["test_accuracy"] == report["test_accuracy"]
    assert report["onnx_genai_test_accuracy"] == genai["test_accuracy"]
    assert "litertlm: " + str(out / "model.litertlm") in output.out


def _attention_run(tiny_folder, tmp_path, capsys, *argv):
    train = write_jsonl(tmp_path / "toy.jsonl", toy_records(20))
    return run_cli(
        capsys, "--task", "causal-lm", "--model", tiny_folder, "--train", train,
        "--max-steps", "2", "--eval-every", "2", "--batch-size", "4",
        "--max-eval-examples", "2", "--export-max-length", "128",
        "--samples", "1", "--quiet", "--out", str(tmp_path / "run"), *argv)


def test_a_run_ships_a_litertlm_base_bundle_and_its_lora_file(
        tiny_folder, tmp_path, capsys):
    import json

    from keras_lowrank.generation.litertlm_adapter import bundle_lora_inputs

    status, output = _attention_run(
        tiny_folder, tmp_path, capsys, "--export", "litertlm_lora",
        "--targets", "query", "key", "value", "attention_output", "--rank", "4",
        "--tflite-quantize", "dynamic")
    assert status == 0, output.err
    out = tmp_path / "run"
    assert sorted(os.listdir(out / "litertlm_lora")) == [
        "adapters.lora.tflite", "base.litertlm"]
    report = json.loads((out / "report.json").read_text())
    exported = report["exports"]["litertlm_lora"]
    assert exported["path"] == str(out / "litertlm_lora")
    assert exported["quantize"] == "dynamic"
    assert exported["size_bytes"] == os.path.getsize(out / "litertlm_lora" / "base.litertlm")
    assert exported["adapter_bytes"] == os.path.getsize(
        out / "litertlm_lora" / "adapters.lora.tflite")
    # The int8 base bundle: rank-4 LoRA padded to the runtime's 16, four
    # attention projections in each of the 2 layers, float32 inputs.
    inputs = bundle_lora_inputs(out / "litertlm_lora" / "base.litertlm")
    assert len(inputs) == 2 * 4 * 2
    assert {shape[1] for name, shape in inputs.items() if "_a_prime_" in name} == {16}
    # Checked in LiteRT-LM, teacher forced on Keras' tokens: the base with
    # no adapter against the base model, then with the run's file against
    # the trained one. The engine takes text: a step counts only where its
    # tokenizer reads Keras' tokens back as the same ids (this tiny
    # byte-level BPE re-splits most of them; free-running, the engine still
    # writes most of Keras' tokens).
    assert exported["tokens_compared"] == 16
    assert 0 < exported["next_tokens_compared"] < exported["tokens_compared"]
    assert exported["next_token_agreement"] >= 0.8
    assert exported["base_next_token_agreement"] >= 0.8
    assert exported["agreement"] >= 0.5
    assert exported["time_to_first_token_ms"] > 0
    assert 0 <= exported["test_accuracy"] <= 1
    assert "litertlm_lora: " + str(out / "litertlm_lora") in output.out


def test_litertlm_lora_of_a_run_adapting_other_layers_is_refused_before_training(
        tiny_folder, tmp_path, capsys):
    status, output = _attention_run(tiny_folder, tmp_path, capsys,
                                    "--export", "litertlm_lora")
    assert status == 2
    assert output.err.count("\n") == 1
    assert ("--export litertlm_lora: LiteRT-LM runtime LoRA adapts the attention "
            "query, key, value and output projections only. Received: an "
            "adapter on 'transformer_layer_0/feedforward_intermediate_dense'"
            in output.err), output.err
    assert "--targets query key value attention_output" in output.err
    assert "[3/6] train" not in output.out
    assert not (tmp_path / "run").exists()
