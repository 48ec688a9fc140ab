"""A revocation's cut as a whole second: ``issued_at < before`` for whole-second ``issued_at``, as integers."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

#: issue times are UNIX seconds: far inside a bigint, whose very end a clamped cut cannot tell apart
ISSUED = st.integers(min_value=-(2**62), max_value=2**62)


@given(issued_at=ISSUED, before=st.floats(allow_nan=True, allow_infinity=True))
@example(issued_at=1_796_300_000, before=1_796_300_000.0)
@example(issued_at=1_796_300_000, before=1_796_300_000.000001)
@example(issued_at=2**62, before=float("inf"))
@example(issued_at=-(2**62), before=float("-inf"))
@example(issued_at=0, before=1e300)
def test_the_integer_cut_keeps_exactly_the_tokens_the_float_cut_keeps(issued_at: int, before: float) -> None:
    from projections.lineage import _issued_before

    cut = _issued_before(before)
    assert -(2**63) <= cut <= 2**63 - 1  # always a PostgreSQL bigint
    assert (issued_at < cut) == (issued_at < before)
