"""`keras-lowrank`: one-line usage errors, --help, and the console script."""

import importlib
import os
import re
import subprocess
import sys

import pytest

from keras_lowrank.cli import inspect_command
from keras_lowrank.cli.main import COMMANDS
from keras_lowrank.cli.main import main


def _exit_code(argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code


@pytest.mark.parametrize(
    "argv, line",
    [
        (["export", "m.keras", "--format", "onnx", "--opset", "abc", "--out", "m.onnx"],
         "keras-lowrank export: error: argument --opset: invalid int value: 'abc' "
         "(see keras-lowrank export --help)"),
        (["merge", "m.keras"],
         "keras-lowrank merge: error: the following arguments are required: --out "
         "(see keras-lowrank merge --help)"),
        (["inspect", "m.keras", "--adaptors", "a.safetensors"],
         "keras-lowrank inspect: error: unrecognized arguments: --adaptors "
         "a.safetensors (see keras-lowrank inspect --help)"),
        (["compress", "m.keras", "--rank", "two", "--out", "c.keras"],
         "keras-lowrank compress: error: argument --rank: invalid int value: 'two' "
         "(see keras-lowrank compress --help)"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(argv, line, capsys):
    assert _exit_code(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [line]
    assert captured.out == ""


def test_an_unknown_command_is_one_line(capsys):
    assert _exit_code(["exprot", "m.keras"]) == 2
    # How the choices are quoted depends on the Python version.
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(
        "keras-lowrank: error: argument command: invalid choice: 'exprot' (choose from "
    )
    assert re.search(r"compress'?\) \(see keras-lowrank --help\)$", line)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_each_command(command, capsys):
    assert _exit_code([command, "--help"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"usage: keras-lowrank {command} [-h]")
    assert "-h, --help" in printed


@pytest.mark.parametrize("command", ["export", "merge", "inspect", "compress"])
def test_model_argument_of_each_command(command, capsys):
    _exit_code([command, "--help"])
    printed = capsys.readouterr().out
    assert "MODEL" in printed and "--adapters FILE" in printed


@pytest.mark.parametrize(
    "error, line",
    [
        (NotADirectoryError(20, "Not a directory", "notes.txt/out.keras"),
         "Not a directory: 'notes.txt/out.keras'"),
        (PermissionError(13, "Permission denied", "/root/out.keras"),
         "Permission denied: '/root/out.keras'"),
        (FileNotFoundError("--adapters file 'a.safetensors' does not exist."),
         "--adapters file 'a.safetensors' does not exist."),
        (ValueError("two\nlines"), "two lines"),
    ],
)
def test_os_and_value_errors_are_one_line(error, line, monkeypatch, capsys):
    def run(args):
        raise error

    monkeypatch.setattr(inspect_command, "run", run)
    assert main(["inspect", "m.keras"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"keras-lowrank inspect: error: {line}"
    ]


@pytest.mark.parametrize(
    "command, argv, line",
    [
        ("inspect", ["inspect", "m.keras"], "keras-lowrank inspect: interrupted"),
        ("merge", ["merge", "m.keras", "--out", "m2.keras"],
         "keras-lowrank merge: interrupted, nothing written: --out 'm2.keras' "
         "is as it was"),
        ("export", ["export", "m.keras", "--format", "onnx", "--out", "m.onnx"],
         "keras-lowrank export: interrupted, nothing written: --out 'm.onnx' "
         "is as it was"),
    ],
)
def test_ctrl_c_is_one_line_and_exit_130(command, argv, line, monkeypatch, capsys):
    def run(args):
        raise KeyboardInterrupt

    module = importlib.import_module(f"keras_lowrank.cli.{command}_command")
    monkeypatch.setattr(module, "run", run)
    assert main(argv) == 130
    assert capsys.readouterr().err.splitlines() == [line]


def test_ctrl_c_while_the_launcher_imports_is_one_line(monkeypatch, capsys):
    import keras_lowrank_cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(keras_lowrank_cli, "_native_logs_dropped", interrupted)
    assert keras_lowrank_cli.main(["inspect", "m.keras"]) == 130
    assert capsys.readouterr().err.splitlines() == ["keras-lowrank: interrupted"]


def test_a_bug_keeps_its_traceback(monkeypatch):
    def run(args):
        raise KeyError("a bug")

    monkeypatch.setattr(inspect_command, "run", run)
    with pytest.raises(KeyError, match="a bug"):
        main(["inspect", "m.keras"])


def _console_script(tmp_path, *args):
    script = os.path.join(os.path.dirname(sys.executable), "keras-lowrank")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [script, *args], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=300,
    )


def test_the_console_script(tmp_path):
    done = _console_script(tmp_path, "export", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: keras-lowrank export [-h] [--adapters FILE]")
    assert "MODEL is a .keras file, or a base preset folder plus --adapters FILE" in (
        " ".join(done.stdout.split()))
    # TensorFlow's native start-up lines ("Could not find cuda drivers", ...)
    # are kept out of the command line's stderr.
    assert done.stderr == ""
    done = _console_script(tmp_path, "export", "missing.keras", "--format", "tflite",
                           "--out", "x.tflite")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "keras-lowrank export: error: MODEL 'missing.keras' does not exist. Give a "
        ".keras file or a model folder."
    ]


def test_the_launcher_passes_on_what_is_not_a_native_log(capfd):
    import keras_lowrank_cli

    with keras_lowrank_cli._native_logs_dropped():
        os.write(2, b"I0000 00:00:1.0  1 cudart_stub.cc:31] Could not find cuda drivers\n")
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() ...\n")
        os.write(2, b"UserWarning: something the user should see\n")
    assert capfd.readouterr().err == "UserWarning: something the user should see\n"
