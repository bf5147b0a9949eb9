"""Each family's name map against keras-hub's converter, per module.

For every mapped module, the keras-hub kernel's matrix view must be the HF
weight as an `(in, out)` matrix (fused modules: the concatenation of their
keras layers' columns), and every HF linear module of the base model must be
mapped except those keras-hub has no separate layer for.
"""

import numpy as np
import pytest
from keras import ops

from keras_lowrank.peft.families import FAMILIES
from keras_lowrank.peft.families import family_of
from keras_lowrank.peft.name_map import ModuleTable
from keras_lowrank.svd.kernel_layout import KernelLayout
from tests.peft import helpers as h


@pytest.mark.parametrize("family", ["bert", "llama", "gpt2"])
def test_kernels_are_the_hf_weights(family, checkpoints):
    hf = h.hf_model(family, checkpoints[family])
    backbone = h.keras_backbone(checkpoints[family])
    table = ModuleTable(family_of(backbone), backbone)
    hf_modules = dict(hf.named_modules())
    linear = {
        name for name, module in hf_modules.items()
        if type(module).__name__ in ("Linear", "Conv1D")
    }
    assert set(table.modules) == linear  # every linear module, nothing else
    for name, module in table.modules.items():
        weight = hf_modules[name].weight.detach().numpy()
        expected = weight if family == "gpt2" else weight.T  # (in, out)
        matrices = [
            ops.convert_to_numpy(KernelLayout.of(table.layers[p]).to_matrix(table.layers[p].kernel))
            for p in module.paths
        ]
        np.testing.assert_array_equal(np.concatenate(matrices, axis=1), expected, err_msg=name)


def test_registry_lists_each_family_once():
    assert [f.name for f in FAMILIES] == ["bert", "llama", "gpt2"]
    assert len({f.backbone_class for f in FAMILIES}) == 3
