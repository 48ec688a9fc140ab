"""docs/security.md carries the catalogue as it is in the test data."""

from __future__ import annotations

from ops.gen_security_doc import DOC, render


def test_security_doc_lists_the_current_catalogue() -> None:
    """The generated table in docs/security.md matches the catalogue (run python -m ops.gen_security_doc)."""
    current = DOC.read_text(encoding="utf-8")
    assert render(current) == current, "docs/security.md is out of date: run python -m ops.gen_security_doc"
