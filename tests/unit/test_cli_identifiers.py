"""Token ids on the command line: a jti that begins with ``-`` still reaches the command."""

from __future__ import annotations

import string

import pytest

from app.exchange import new_jti
from ops.cli import attach_identifier_values, build_parser

URLSAFE = set(string.ascii_letters + string.digits + "-_")


def test_revoke_takes_a_jti_that_begins_with_a_dash():
    """`baton revoke --jti -Ab3` revokes "-Ab3" instead of failing with "expected one argument"."""
    argv = attach_identifier_values(["revoke", "--config", "b.toml", "--jti", "-Ab3", "--reason", "leak"])
    args = build_parser().parse_args(argv)
    assert (args.jti, args.reason) == ("-Ab3", "leak")


def test_audit_exchanges_takes_a_jti_that_begins_with_a_dash():
    args = build_parser().parse_args(attach_identifier_values(["audit", "exchanges", "--jti", "--x_", "--format", "json"]))
    assert (args.jti, args.format) == ("--x_", "json")


def test_arguments_after_a_double_dash_pass_through_untouched():
    """After ``--`` everything is positional, including a literal ``--jti``; `audit tree -- -Ab3` draws "-Ab3"."""
    assert attach_identifier_values(["audit", "tree", "--", "--jti", "x"]) == ["audit", "tree", "--", "--jti", "x"]
    args = build_parser().parse_args(["audit", "tree", "--config", "b.toml", "--", "-Ab3"])
    assert args.jti == "-Ab3"


def test_a_trailing_jti_option_without_value_still_errors_in_argparse(capsys):
    argv = attach_identifier_values(["revoke", "--config", "b.toml", "--jti"])
    assert argv == ["revoke", "--config", "b.toml", "--jti"]
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert "--jti: expected one argument" in capsys.readouterr().err


def test_issued_jtis_are_base64url_and_never_begin_with_a_dash():
    """Baton's own jtis paste into any command line: 2,000 draws, none starts with "-" (1 in 64 would, unchecked)."""
    jtis = [new_jti() for _ in range(2000)]
    assert all(len(j) == 24 and set(j) <= URLSAFE and j[0] != "-" for j in jtis)
    assert len(set(jtis)) == len(jtis)
