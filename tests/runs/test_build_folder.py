"""`run_in_build_folder`: stages built aside, the report last, `--out`
replaced whole, or left as it was."""

import json
import os

import pytest

from keras_lowrank.runs import check_out
from keras_lowrank.runs import run_in_build_folder


def _stages(build, progress):
    with progress.stage("data") as note:
        note("read")
    for name in ("adapters.safetensors", "training_curves.png"):
        with open(os.path.join(build, name), "wb") as file:
            file.write(b"x")
    return {"exports": {}}


def test_the_report_holds_the_stage_times_and_out_holds_the_run(tmp_path):
    lines = []
    out = tmp_path / "run"
    report = run_in_build_folder(str(out), _stages, log=lines.append,
                                 summary=lambda report: "summary")
    assert sorted(os.listdir(out)) == [
        "adapters.safetensors", "report.json", "training_curves.png"]
    with open(out / "report.json", encoding="utf-8") as file:
        assert json.load(file) == report
    assert list(report["stage_seconds"]) == ["data"]
    assert set(report["stage_cpu_seconds"]["data"]) == {"user", "system"}
    assert report["total_seconds"] >= report["stage_seconds"]["data"]
    assert lines[0] == "[1/6] data ..." and lines[-2:] == ["", "summary"]


def test_a_failing_stage_leaves_out_as_it_was(tmp_path):
    out = tmp_path / "run"
    run_in_build_folder(str(out), _stages, log=lambda line: None, summary=str)
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}

    def failing(build, progress):
        _stages(build, progress)
        raise RuntimeError("stage failed")

    with pytest.raises(RuntimeError, match="stage failed"):
        run_in_build_folder(str(out), failing, log=lambda line: None, summary=str)
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_an_out_holding_other_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt|holds"):
        check_out(str(tmp_path))
    assert os.listdir(tmp_path) == ["notes.txt"]
