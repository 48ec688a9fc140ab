"""The log processors: redaction of secrets and JWTs, and the UTC time stamp of every line."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import logs
from app.logs import SENSITIVE_KEYS, _UtcStamper, redact


@given(key=st.one_of(st.sampled_from(sorted(SENSITIVE_KEYS)), st.text(min_size=1, max_size=20)),
       upper=st.booleans(), value=st.text(max_size=30))
def test_a_field_is_redacted_exactly_when_its_name_is_sensitive_in_any_case(key: str, upper: bool, value: str) -> None:
    name = key.upper() if upper else key
    out = redact(None, "info", {name: value, "event": "e"})
    if name.lower() in SENSITIVE_KEYS:
        assert out[name] == "[redacted]"
    elif "eyJ" not in value:
        assert out[name] == value


def test_jwt_shaped_strings_are_masked_wherever_they_appear() -> None:
    token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
    out = redact(None, "info", {"event": "request", "client_id": f"x {token} y", "status": 200})
    assert out == {"event": "request", "client_id": "x [redacted-jwt] y", "status": 200}


def test_the_stamp_is_utc_iso_8601_with_microseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    stamper = _UtcStamper()
    clock = iter([1_796_300_000.25, 1_796_300_000.999999, 1_796_300_001.0, 1_796_300_061.5])
    monkeypatch.setattr(logs.time, "time", lambda: next(clock))
    stamps = [stamper(None, "info", {})["timestamp"] for _ in range(4)]
    expected = [
        datetime.datetime.fromtimestamp(t, tz=datetime.timezone.utc)
        for t in (1_796_300_000.25, 1_796_300_000.999999, 1_796_300_001.0, 1_796_300_061.5)
    ]
    for stamp, when in zip(stamps, expected, strict=True):
        assert stamp.endswith("Z") and len(stamp) == len("2026-12-03T13:55:16.543977Z")
        parsed = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert abs((parsed - when).total_seconds()) < 2e-6
