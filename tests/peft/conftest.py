"""PEFT interchange tests, against the real torch, transformers and peft
(pinned in the dev extra: a missing one is an error, never a skip)."""

import pytest

from tests.peft import helpers

helpers.import_torch_stack()


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """`{family: HF checkpoint folder}`, saved once per session."""
    root = tmp_path_factory.mktemp("hf_checkpoints")
    return {
        family: helpers.save_hf_checkpoint(family, str(root / family))
        for family in ("bert", "llama", "gpt2")
    }
