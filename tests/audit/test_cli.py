"""The operator commands: `baton replay`, `projections status`, `audit …` (tables, the tree) and `export`."""

from __future__ import annotations

import asyncio
import json

import pytest

from eventstore import open_store
from eventstore.hashing import chain_hash, record_bytes
from ops.audit_render import draw_tree
from ops.cli import main
from tests.projections.workload import IDP, Workload, append


async def _populate(url: str) -> dict:
    w = Workload()
    root = w.exchange()
    b = w.exchange(parent=root, actor="svc-b", client="svc-b")
    c = w.exchange(parent=b, actor="svc-c", client="svc-c")
    d = w.exchange(parent=root, actor="svc-d", client="svc-d")
    store = open_store(url)
    await store.open()
    try:
        await append(store, [root, b, c, d, w.denied(reason="depth_exceeded"), w.revoke_token(b.issued_jti)])
    finally:
        await store.close()
    return {"root": root, "b": b, "c": c, "d": d}


@pytest.fixture
def cli(store_url, tmp_path):
    """A config file over a populated store (views not projected yet) and the tokens in it."""
    tokens = asyncio.run(_populate(store_url))
    config = tmp_path / "baton.toml"
    config.write_text(f'issuer = "https://baton.test"\n[store]\nurl = "{store_url}"\n')

    def run(*argv: str) -> int:
        return main([*argv, "--config", str(config)])

    return run, tokens


def test_status_shows_lag_then_replay_catches_up_and_reports_speed(cli, capsys):
    """Before a replay the audit view lags by the whole log; `replay` reports events/s; then lag is 0."""
    run, _ = cli
    assert run("projections", "status", "--json") == 0
    [before] = json.loads(capsys.readouterr().out)
    assert (before["name"], before["checkpoint"], before["head"], before["lag"]) == ("audit", 0, 6, 6)
    assert run("replay", "--projection", "audit") == 0
    assert "audit: replayed 6 events" in capsys.readouterr().err
    assert run("projections", "status") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["PROJECTION", "CHECKPOINT", "HEAD", "LAG"]
    assert out.splitlines()[2].split()[:4] == ["audit", "6", "6", "0"]


def test_replay_refuses_unknown_projection(cli, capsys):
    """An unknown projection name is an error naming the known ones, not a silent no-op."""
    run, _ = cli
    assert run("replay", "--projection", "nope") == 2
    assert "known:" in capsys.readouterr().err


def test_audit_exchanges_prints_a_table_filtered_by_actor(cli, capsys):
    """`baton audit exchanges --actor-sub` prints a header and one row per matching exchange, chain included."""
    run, t = cli
    run("replay", "--projection", "audit")
    capsys.readouterr()
    assert run("audit", "exchanges", "--actor-sub", "svc-b") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("POSITION") and "ACTORS" in lines[0]
    assert len(lines) == 4
    assert t["c"].issued_jti in lines[3] and "svc-c ← svc-b" in lines[3]


def test_audit_page_hint_and_jsonl(cli, capsys):
    """A limited table says how to get the next page; `--format jsonl` prints one object per line."""
    run, _ = cli
    run("replay", "--projection", "audit")
    capsys.readouterr()
    run("audit", "exchanges", "--limit", "2")
    assert capsys.readouterr().out.splitlines()[-1] == "more: --after 2"
    run("audit", "denied", "--format", "jsonl")
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["reason"] == "depth_exceeded"


def test_audit_tree_draws_the_delegation_chain(cli, capsys):
    """`baton audit tree JTI` draws root → b → c with box-drawing characters, marks JTI and revocations."""
    run, t = cli
    run("replay", "--projection", "audit")
    capsys.readouterr()
    assert run("audit", "tree", t["b"].issued_jti) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(t["root"].issued_jti + "  delegation for alice")
    assert lines[1].startswith(f"└── {t['b'].issued_jti}") and lines[1].endswith("◀ this token")
    assert "REVOKED (token revocation by admin" in lines[1]
    assert lines[2].startswith(f"    └── {t['c'].issued_jti}") and f"through ancestor {t['b'].issued_jti}" in lines[2]
    assert run("audit", "tree", "unknown") == 1


def test_audit_subject_summary(cli, capsys):
    """`baton audit subject ISS SUB` prints the counts and the actors seen."""
    run, _ = cli
    run("replay", "--projection", "audit")
    capsys.readouterr()
    assert run("audit", "subject", IDP, "alice") == 0
    out = capsys.readouterr().out
    assert "exchanges    4" in out and "denied       1" in out and "svc-b (2)" in out


def test_export_writes_jsonl_whose_hashes_recompute(cli, tmp_path, capsys):
    """`baton export` lines carry position, stream, type, the stored event bytes and hashes an auditor can recompute."""
    run, _ = cli
    out = tmp_path / "log.jsonl"
    assert run("export", "-o", str(out), "--from", "2") == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["position"] for line in lines] == [2, 3, 4, 5, 6]
    assert lines[0]["type"] == "TokenExchanged" and lines[0]["event"]["type"] == "TokenExchanged"
    raw = out.read_bytes().splitlines()
    for line, parsed in zip(raw, lines):
        data = line[line.index(b'"event":') + 8 : line.index(b',"prev_hash"')]
        record = record_bytes(parsed["stream"], parsed["stream_version"], parsed["event_id"], parsed["recorded_at"], data)
        assert chain_hash(bytes.fromhex(parsed["prev_hash"]), parsed["position"], record).hex() == parsed["hash"]
    for earlier, later in zip(lines, lines[1:]):
        assert later["prev_hash"] == earlier["hash"]


def test_draw_tree_branches_and_truncation():
    """Siblings get ├── and the last one └──, with │ continuing the rail; truncation is said."""
    def node(jti, children=()):
        return {
            "jti": jti, "kind": "delegation", "subject_sub": "u", "actors": [], "client_id": "c", "audience": ["a"],
            "scope": [], "at": "t", "revoked": None, "children": list(children),
        }  # fmt: skip

    tree = {"jti": "r", "truncated": True, "descendants": 3, "root": node("r", [node("x", [node("x1")]), node("y")])}
    lines = draw_tree(tree).splitlines()
    assert [line.split("  delegation")[0] for line in lines[:4]] == ["r", "├── x", "│   └── x1", "└── y"]
    assert lines[0].endswith("◀ this token")
    assert lines[4].startswith("… more descendants not shown")


def test_replay_all_rebuilds_lineage_and_audit(cli, capsys):
    """`baton replay` (all) rebuilds the inline lineage and the audit views, reporting each."""
    run, t = cli
    assert run("replay") == 0
    err = capsys.readouterr().err
    assert "lineage: replayed 6 events" in err and "audit: replayed 6 events" in err
    assert run("audit", "exchanges", "--jti", t["c"].issued_jti, "--format", "jsonl") == 0
    assert json.loads(capsys.readouterr().out)["depth"] == 3
