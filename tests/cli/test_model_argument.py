"""A MODEL that is a .keras file Keras cannot read: one line saying why."""

import os
import zipfile

import pytest

from keras_lowrank.cli.main import main
from tests import tiny_models as tiny


def _corrupt(tmp_path, kind):
    path = tmp_path / "model.keras"
    if kind == "not_a_zip":
        path.write_bytes(b"not a model")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        tiny.sequential_mlp().save(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:  # a zip archive without the config Keras reads first
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "hello")
    return path


REASONS = {
    "not_a_zip": "not a zip archive (11 bytes)",
    "empty": "not a zip archive (0 bytes)",
    "truncated": "not a zip archive ({size:,} bytes)",
    "no_config": "There is no item named 'config.json' in the archive",
}
COMMANDS = {
    "export": ["--format", "onnx", "--out", "{root}/out.onnx"],
    "merge": ["--out", "{root}/out.keras"],
    "inspect": [],
    "compress": ["--rank", "2", "--out", "{root}/out.keras"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("kind", sorted(REASONS))
def test_a_corrupt_keras_file_is_not_file_not_found(tmp_path, capsys, command, kind):
    path = _corrupt(tmp_path, kind)
    content = path.read_bytes()
    args = [arg.format(root=tmp_path) for arg in COMMANDS[command]]
    assert main([command, str(path), *args]) == 2
    reason = REASONS[kind].format(size=len(content))
    assert capsys.readouterr().err.splitlines() == [
        f"keras-lowrank {command}: error: MODEL '{path}' is not a readable "
        f".keras file: {reason}. Give a .keras file written by Keras "
        "(model.save)."
    ]
    assert os.listdir(tmp_path) == ["model.keras"]
    assert path.read_bytes() == content
