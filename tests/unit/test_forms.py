"""Form parsing (app/forms.py) splits and decodes exactly as ``urllib.parse.parse_qsl`` does, strictly."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import OAuthError
from app.forms import _pairs, parse_form_bytes

_FIELD_TEXT = st.text(alphabet=st.sampled_from("ab=&+% 3A2F0Fé\u00ff\u2603%E2%82%AC%zz%C3"), max_size=40)


@settings(max_examples=500, deadline=None)
@given(text=_FIELD_TEXT | st.text(max_size=40))
def test_fields_split_and_decode_as_parse_qsl(text: str) -> None:
    """Empty fields, missing '=', '+', valid and broken percent escapes: the same pairs, or the same refusal."""
    try:
        expected = ("ok", parse_qsl(text, keep_blank_values=True, errors="strict"))
    except UnicodeDecodeError:
        expected = ("refused", None)
    try:
        got = ("ok", list(_pairs(text)))
    except UnicodeDecodeError:
        got = ("refused", None)
    assert got == expected


_NO_NUL = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))  # what a client can encode


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.tuples(st.text(_NO_NUL, min_size=1, max_size=12), st.text(_NO_NUL, max_size=200)),
                       max_size=6, unique_by=lambda p: p[0]))
def test_an_encoded_form_comes_back_as_sent(values: list[tuple[str, str]]) -> None:
    """Whatever a client urlencodes (long values included, past the decoding cache's limit) is what Baton reads."""
    form = parse_form_bytes(urlencode(values).encode(), multi_valued=())
    assert form.single == {name: value for name, value in values if value}


def test_escaped_urns_decode_and_broken_utf8_is_refused() -> None:
    """The token-type URNs decode (through the cache, twice); a percent escape that is not UTF-8 is invalid_request."""
    body = b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&audience=a+b&audience=c"
    for _ in range(2):
        form = parse_form_bytes(body)
        assert form.get("grant_type") == "urn:ietf:params:oauth:grant-type:token-exchange"
        assert form.getlist("audience") == ["a b", "c"]
    with pytest.raises(OAuthError) as refused:
        parse_form_bytes(b"scope=%C3")
    assert refused.value.reason == "malformed_body"
