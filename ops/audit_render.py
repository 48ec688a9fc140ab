"""Terminal rendering for ``baton audit``: plain tables and the delegation tree in box-drawing characters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from projections.audit import act_chain

#: a cell longer than this is cut with an ellipsis (tables stay readable; use --format for full rows)
MAX_CELL = 36

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def _cut(text: str, width: int = MAX_CELL) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def table(columns: Sequence[Column], items: Sequence[dict[str, Any]]) -> str:
    """A left-aligned text table with a header and a rule; ``(no rows)`` when empty."""
    if not items:
        return "(no rows)\n"
    cells = [[_cut(_text(get(item))) for _, get in columns] for item in items]
    headers = [name.upper() for name, _ in columns]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in cells)]) + "\n"


def _chain(item: dict[str, Any]) -> str:
    actors = [sub for _, sub in act_chain(item.get("act"))] or ([item["actor_sub"]] if item.get("actor_sub") else [])
    return " ← ".join(actors)


#: the columns each ``baton audit`` list shows in a table
TABLE_COLUMNS: dict[str, list[Column]] = {
    "exchanges": [
        ("position", lambda i: i["position"]),
        ("at", lambda i: i["at"]),
        ("subject", lambda i: f"{i['subject_sub']} ({i['subject_iss']})"),
        ("actors", _chain),
        ("client", lambda i: i["client_id"]),
        ("kind", lambda i: i["kind"]),
        ("audience", lambda i: i["audience"]),
        ("scope", lambda i: i["scope"]),
        ("jti", lambda i: i["issued_jti"]),
        ("depth", lambda i: i["depth"]),
    ],
    "denied": [
        ("position", lambda i: i["position"]),
        ("at", lambda i: i["at"]),
        ("event", lambda i: i["event"]),
        ("client", lambda i: i["client_id"]),
        ("subject", lambda i: i["subject_sub"]),
        ("reason", lambda i: i["reason"]),
        ("description", lambda i: i["description"]),
    ],
    "revocations": [
        ("position", lambda i: i["position"]),
        ("at", lambda i: i["at"]),
        ("kind", lambda i: i["kind"]),
        ("target", lambda i: i["jti"] or i["client_id"] or f"{i['subject_sub']} ({i['subject_iss']})"),
        ("before", lambda i: i["revoked_before"]),
        ("cascades", lambda i: i["cascades"]),
        ("by", lambda i: i["revoked_by"]),
        ("reason", lambda i: i["reason"]),
    ],
}


def _revoked(node: dict[str, Any]) -> str:
    revoked = node.get("revoked")
    if not revoked:
        return ""
    if revoked["how"] == "ancestor":
        return f"  REVOKED (through ancestor {revoked['jti']})"
    why = f": {revoked['reason']}" if revoked.get("reason") else ""
    return f"  REVOKED ({revoked['how']} revocation by {revoked['by']} at {revoked['at']}{why})"


def node_label(node: dict[str, Any]) -> str:
    """One line describing a token of the tree."""
    actors = " ← ".join(node["actors"])
    parts = [
        node["jti"],
        f"{node['kind']} for {node['subject_sub']}",
        f"actors {actors}" if actors else "",
        f"client {node['client_id']}",
        f"aud {' '.join(node['audience'])}",
        f"scope {' '.join(node['scope'])}" if node["scope"] else "",
        f"at {node['at']}",
    ]
    return "  ".join(p for p in parts if p) + _revoked(node)


def draw_tree(tree: dict[str, Any]) -> str:
    """The delegation tree of ``tree['jti']`` drawn with ``├──``, ``└──`` and ``│``; the token is marked."""
    lines: list[str] = []
    focus = tree["jti"]

    def visit(node: dict[str, Any], prefix: str, connector: str, child_prefix: str) -> None:
        mark = "   ◀ this token" if node["jti"] == focus else ""
        lines.append(prefix + connector + node_label(node) + mark)
        children = node["children"]
        for i, child in enumerate(children):
            last = i == len(children) - 1
            visit(child, prefix + child_prefix, "└── " if last else "├── ", "    " if last else "│   ")

    visit(tree["root"], "", "", "")
    if tree["truncated"]:
        lines.append(f"… more descendants not shown (first {tree['descendants']} listed)")
    return "\n".join(lines) + "\n"


def summary_text(summary: dict[str, Any]) -> str:
    """A subject's activity summary as aligned ``key: value`` lines."""
    lines = [
        f"subject      {summary['subject_sub']} ({summary['subject_iss']})",
        f"exchanges    {summary['exchanges']}",
        f"denied       {summary['denied']}",
        f"revocations  {summary['revocations']}",
        f"first seen   {summary['first_seen']}",
        f"last seen    {summary['last_seen']}",
    ]
    for key in ("clients", "audiences", "actors"):
        top = ", ".join(f"{t['value']} ({t['exchanges']})" for t in summary[key]) or "-"
        lines.append(f"{key:<12} {top}")
    return "\n".join(lines) + "\n"
