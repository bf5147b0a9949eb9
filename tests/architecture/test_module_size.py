"""No module of the package over 400 lines (issue 24): a module that grows
past it holds more than one job, and is split by what it holds."""

import pathlib

import keras_lowrank

MAX_LINES = 400
PACKAGE = pathlib.Path(keras_lowrank.__file__).parent


def test_no_module_over_400_lines():
    sizes = {str(path.relative_to(PACKAGE.parent)): len(path.read_text("utf-8").splitlines())
             for path in PACKAGE.rglob("*.py")}
    assert len(sizes) > 100  # the whole package was read
    over = {path: lines for path, lines in sizes.items() if lines > MAX_LINES}
    assert over == {}, f"modules over {MAX_LINES} lines: {over}"
