"""The test helper that turns rates into counts of examples (issue 27)."""

import pytest

from tests.counts import examples
from tests.counts import examples_below


def test_the_one_point_boundary_is_two_of_two_hundred():
    # The float difference that failed on a fresh clone: 2 of 200 below.
    assert 0.765 - 0.775 < -0.01
    assert examples_below(0.765, 0.775, 200) == 2
    assert examples(0.995, 200) == 199
    assert examples(199 / 200, 200) == 199


def test_a_rate_that_is_no_share_of_the_total_is_refused():
    with pytest.raises(ValueError, match=r"rate=0\.5001 is not a whole number of "
                       r"examples out of total=200"):
        examples(0.5001, 200)
