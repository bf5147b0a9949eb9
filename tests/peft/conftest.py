"""PEFT interchange tests: skipped when torch, transformers or peft is missing."""

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from tests.peft import helpers  # noqa: E402

helpers.import_torch_stack()


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """`{family: HF checkpoint folder}`, saved once per session."""
    root = tmp_path_factory.mktemp("hf_checkpoints")
    return {
        family: helpers.save_hf_checkpoint(family, str(root / family))
        for family in ("bert", "llama", "gpt2")
    }
