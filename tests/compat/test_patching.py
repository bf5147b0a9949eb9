"""The one patching mechanism of `keras_lowrank._compat`."""

import pytest

from keras_lowrank._compat.patching import attribute_replaced


class Owner:
    @staticmethod
    def kind():
        return "original"

    value = 1


def test_attribute_replaced_within_the_context_only():
    with attribute_replaced(Owner, "value", 2):
        assert Owner.value == 2
    assert Owner.value == 1


def test_attribute_replaced_keeps_a_staticmethod_one_and_restores_on_error():
    original = Owner.__dict__["kind"]
    with pytest.raises(ValueError, match="inside"):
        with attribute_replaced(Owner, "kind", staticmethod(lambda: "patched")):
            assert Owner.kind() == "patched"
            raise ValueError("inside")
    assert Owner.__dict__["kind"] is original and Owner().kind() == "original"


def test_attribute_replaced_needs_an_attribute_the_owner_holds():
    # An inherited or missing attribute would be shadowed, then deleted
    # wrongly: refused before anything changes.
    with pytest.raises(KeyError, match="missing"):
        with attribute_replaced(Owner, "missing", 0):
            pass
    assert not hasattr(Owner, "missing")
