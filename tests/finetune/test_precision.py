"""`--precision`: what each value means on each machine, and a bfloat16 run."""

import os

import numpy as np
import pytest
from safetensors.numpy import load_file

from keras_lowrank.cli.main import main
from keras_lowrank.finetune import FinetuneOptions
from keras_lowrank.finetune import finetune
from keras_lowrank.finetune import precision as precision_lib
from keras_lowrank.finetune.precision import resolve_precision

AVX2 = {"fpu", "avx2", "fma"}
SAPPHIRE_RAPIDS = AVX2 | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
H100 = [("NVIDIA H100", (9, 0))]
T4 = [("Tesla T4", (7, 5))]


@pytest.mark.parametrize("requested, flags, gpus, chosen, reason", [
    ("auto", AVX2, [], "float32", "auto: float32, the CPU has no native bfloat16 "
     "(the CPU has neither AVX512_BF16 nor AMX)"),
    ("auto", SAPPHIRE_RAPIDS, [], "bfloat16",
     "auto: bfloat16 on the CPU with AMX_BF16, AVX512_BF16"),
    ("auto", {"avx512_bf16"}, [], "bfloat16", "auto: bfloat16 on the CPU with AVX512_BF16"),
    ("auto", AVX2, T4, "float16",
     "auto: float16 on the GPU Tesla T4 (compute capability 7.5)"),
    ("auto", SAPPHIRE_RAPIDS, H100, "float16",
     "auto: float16 on the GPU NVIDIA H100 (compute capability 9.0)"),
    ("float32", AVX2, [], "float32", "requested; runs on the CPU"),
    ("bfloat16", SAPPHIRE_RAPIDS, [], "bfloat16",
     "requested; runs on the CPU with AMX_BF16, AVX512_BF16"),
    ("bfloat16", AVX2, H100, "bfloat16",
     "requested; runs on the GPU NVIDIA H100 (compute capability 9.0)"),
    ("float16", AVX2, T4, "float16",
     "requested; runs on the GPU Tesla T4 (compute capability 7.5)"),
])
def test_what_each_precision_resolves_to(requested, flags, gpus, chosen, reason):
    resolved = resolve_precision(requested, cpu_flags=flags, gpus=gpus)
    assert (resolved.requested, resolved.name, resolved.reason) == (
        requested, chosen, reason)
    assert resolved.policy == {"float32": "float32", "bfloat16": "mixed_bfloat16",
                               "float16": "mixed_float16"}[chosen]


@pytest.mark.parametrize("requested, flags, gpus, message", [
    ("bfloat16", AVX2, [], r"^precision='bfloat16' cannot run on this machine's "
     r"CPU: the CPU has neither AVX512_BF16 nor AMX\. Supported here: "
     r"\['auto', 'float32'\]$"),
    ("float16", SAPPHIRE_RAPIDS, [], r"^precision='float16' cannot run on this "
     r"machine's CPU with AMX_BF16, AVX512_BF16: float16 training needs a GPU\. "
     r"Supported here: \['auto', 'float32', 'bfloat16'\]$"),
    ("bfloat16", SAPPHIRE_RAPIDS, T4, r"^precision='bfloat16' cannot run on this "
     r"machine's GPU Tesla T4 \(compute capability 7\.5\): bfloat16 needs "
     r"compute capability 8\.0 or newer\. Supported here: \['auto', 'float32', "
     r"'float16'\]$"),
    ("int8", AVX2, [], r"^Unrecognized precision='int8'\. Supported values are: "
     r"\['auto', 'float32', 'bfloat16', 'float16'\]$"),
])
def test_a_precision_the_machine_cannot_run_is_refused(requested, flags, gpus, message):
    with pytest.raises(ValueError, match=message):
        resolve_precision(requested, cpu_flags=flags, gpus=gpus)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 "
                       "avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert precision_lib.read_cpu_flags(str(cpuinfo)) == {"fpu", "avx2", "avx512_bf16"}
    assert precision_lib.read_cpu_flags(str(tmp_path / "missing")) == set()


def test_the_cli_refuses_an_impossible_precision_in_one_line(
        capsys, tmp_path, tiny_preset, tiny_train_csv, monkeypatch):
    monkeypatch.setattr(precision_lib, "read_cpu_flags", lambda: set(AVX2))
    monkeypatch.setattr(precision_lib, "gpu_capabilities", lambda: [])
    out = tmp_path / "run"
    code = main(["finetune", "--quiet", "--train", tiny_train_csv, "--model",
                 tiny_preset, "--sequence-length", "12", "--cache-dir",
                 str(tmp_path / "cache"), "--out", str(out), "--precision",
                 "bfloat16"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        "keras-lowrank finetune: error: precision='bfloat16' cannot run on this "
        "machine's CPU: the CPU has neither AVX512_BF16 nor AMX. Supported "
        "here: ['auto', 'float32']"]
    assert not out.exists()  # refused before any slow work


def test_a_bfloat16_run_keeps_float32_factors_and_exports_float32(
        tiny_preset, tiny_train_csv, tmp_path, monkeypatch):
    import keras

    import keras_lowrank as klr

    # bfloat16 wherever the test runs (emulated on a CPU without it: slower,
    # the same numbers).
    monkeypatch.setattr(precision_lib, "read_cpu_flags", lambda: {"avx512_bf16"})
    monkeypatch.setattr(precision_lib, "gpu_capabilities", lambda: [])
    built = []
    real_build = klr.add_adapters

    def add_adapters(model, **kwargs):
        adapted = real_build(model, **kwargs)
        built.append(adapted)
        return adapted

    monkeypatch.setattr(klr, "add_adapters", add_adapters)
    out = tmp_path / "run"
    report = finetune(FinetuneOptions(
        out=str(out), model=tiny_preset, train_files=(tiny_train_csv,),
        cache_dir=str(tmp_path / "cache"), sequence_length=12, batch_size=8,
        epochs=1, export=("tflite",), tflite_quantize=None, precision="auto",
        # The float32 artifact is what this test reads; the phone artifacts
        # (their export after a run: test_phone_artifacts.py) are left out.
        phone_artifacts=(), verbose=0,
    ), log=lambda line: None)

    assert report["precision"] == {
        "requested": "auto", "train": "bfloat16",
        "reason": "auto: bfloat16 on the CPU with AVX512_BF16",
        "evaluate_and_export": "float32"}
    assert keras.config.dtype_policy().name == "float32"  # restored
    trained = built[0]
    assert trained.dtype_policy.name == "mixed_bfloat16"
    from keras_lowrank.adapters.adapted_model import adapters

    adapter = next(iter(adapters(trained).values()))
    # Factors, every other variable and the optimizer state stay float32.
    assert (adapter.compute_dtype, adapter.lora_a.dtype) == ("bfloat16", "float32")
    assert {w.dtype for w in trained.weights} == {"float32"}
    assert {v.dtype for v in trained.optimizer.variables} <= {"float32", "int64"}
    tensors = load_file(os.path.join(out, "adapters.safetensors"))
    assert {t.dtype for t in tensors.values()} == {np.dtype("float32")}
    # Evaluated and exported in float32: the artifact matches Keras closely.
    assert report["tflite_max_abs_diff"] < 1e-4
    assert report["tflite_test_accuracy"] == report["test_accuracy"]
