import pytest

from keras_lowrank.surgery.layer_patterns import check_pattern
from keras_lowrank.surgery.layer_patterns import matches

PATH = "transformer_layer_3/self_attention_layer/query"


@pytest.mark.parametrize(
    "pattern, expected",
    [
        (PATH, True),
        ("query", True),
        ("value", False),
        ("self_attention_layer", False),
        ("*/self_attention_layer/query", True),
        ("*/self_attention_layer/value", False),
        ("transformer_layer_[0-3]/*/query", True),
        ("transformer_layer_[4-5]/*/query", False),
        ("que*", True),
        ("re:transformer_layer_\\d+/self_attention_layer/(query|value)", True),
        ("re:query", False),  # a regex matches the whole path
        ("layer_3/self_attention_layer/query", False),  # paths are not suffixes
    ],
)
def test_each_kind_of_pattern(pattern, expected):
    assert matches(pattern, PATH) is expected


def test_bad_patterns_are_refused():
    with pytest.raises(ValueError, match=r"invalid regular expression 're:\(query'"):
        check_pattern("re:(query", "targets")
    with pytest.raises(ValueError, match=r"`targets` expected non-empty strings .*Received: ''"):
        check_pattern("", "targets")
