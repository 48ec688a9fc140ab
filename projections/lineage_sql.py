"""The lineage projection's one-statement batch on PostgreSQL: the log and the lineage in one call.

:func:`baton_append_exchanges <FUNCTION_DDL>` writes a group-commit batch of
exchanges and other single events (denials) as one autocommit statement (see
:mod:`eventstore.one_statement`), with exactly the outcome of the classic path —
:func:`eventstore.batch.write_batch` with :class:`projections.lineage.LineageProjection`
— for the batches it takes:

- an exchange whose presented token's subject was revoked before the token was
  issued is refused ``<role>_revoked`` (the first such token, in the order presented);
- else one whose parent token is revoked, or whose origin subject or client was
  revoked with a cut after the exchange happened, is refused ``revoked_during_exchange``;
- every other append is written, in batch order, the hash chain extended over it,
  and each exchange's lineage row inserted (its origin is its parent's, or its subject).

It takes only batches in which every exchange carries its
:class:`~projections.lineage.ExchangeCondition` and no exchange's parent is issued
in the same batch, and no revocation: the others (and any batch meeting a stored
event id or stream) go the classic way. Its lookups are index steps, planned with
sequential scans off: a plan cached while the tables were small must not turn into a
scan of every row as they grow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventstore.batch import PendingAppend
from eventstore.events import TokenExchanged, event_type
from eventstore.one_statement import FreshRecords

from .lineage import _HANDLED, ExchangeCondition, _dumps

FUNCTION_DDL = r"""
CREATE OR REPLACE FUNCTION baton_append_exchanges(
    b_lock_key bigint, b_recorded_at double precision, b_stream_ids text[], b_event_ids text[],
    b_event_types text[], b_envelopes bytea[], b_datas bytea[],
    x_append integer[], x_jti text[], x_parent text[], x_root text[], x_depth integer[], x_subject_iss text[],
    x_subject_sub text[], x_client text[], x_audience text[], x_scope text[], x_act text[],
    x_issued_at bigint[], x_expires_at bigint[], x_at double precision[],
    p_append integer[], p_role text[], p_iss text[], p_sub text[], p_issued_at double precision[]
) RETURNS TABLE (o_refusal text, o_position bigint, o_prev_hash bytea, o_hash bytea)
LANGUAGE plpgsql SET enable_seqscan = off AS $fn$
DECLARE
    n integer := cardinality(b_event_ids);
    refusals text[] := array_fill(NULL::text, ARRAY[n]);
    positions bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    prevs bytea[] := array_fill(NULL::bytea, ARRAY[n]);
    hashes bytea[] := array_fill(NULL::bytea, ARRAY[n]);
    subs text[] := x_subject_sub || p_sub;
    head_position bigint;
    head_hash bytea;
    accepted integer := 0;
    refused_append integer;
    reason text;
BEGIN
    -- the lock first: every statement below sees what committed before it was granted
    PERFORM pg_advisory_xact_lock(b_lock_key);
    IF EXISTS (SELECT 1 FROM events e WHERE e.event_id = ANY(b_event_ids))
       OR EXISTS (SELECT 1 FROM events e WHERE e.stream_id = ANY(b_stream_ids)) THEN
        RETURN;  -- a retried append or a stream taken: the classic path judges those
    END IF;

    FOR refused_append, reason IN
        SELECT DISTINCT ON (p.a) p.a, p.role || '_revoked'
        FROM unnest(p_append, p_role, p_iss, p_sub, p_issued_at) WITH ORDINALITY AS p(a, role, iss, sub, iat, ord)
        JOIN revoked_subjects r ON r.iss = p.iss AND r.sub = p.sub
        WHERE p.iat IS NULL OR p.iat < r.before
        ORDER BY p.a, p.ord
    LOOP
        refusals[refused_append] := reason;
    END LOOP;

    FOR refused_append IN
        SELECT x.a
        FROM unnest(x_append, x_parent, x_subject_iss, x_subject_sub, x_client, x_at) AS x(a, parent, siss, ssub, client, at)
        LEFT JOIN lineage l ON l.jti = x.parent
        WHERE l.revoked_at IS NOT NULL
           OR EXISTS (SELECT 1 FROM revoked_subjects s
                      WHERE s.iss = coalesce(l.origin_iss, x.siss) AND s.sub = coalesce(l.origin_sub, x.ssub)
                        AND s.sub = ANY(subs) AND x.at < s.before)
           OR EXISTS (SELECT 1 FROM revoked_clients c WHERE c.client_id = x.client AND x.at < c.before)
    LOOP
        refusals[refused_append] := coalesce(refusals[refused_append], 'revoked_during_exchange');
    END LOOP;

    SELECT e.position, e.hash INTO head_position, head_hash FROM events e ORDER BY e.position DESC LIMIT 1;
    IF head_position IS NULL THEN
        head_position := 0;
        head_hash := decode(repeat('00', 32), 'hex');
    END IF;
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN refusals[i] IS NOT NULL;
        head_position := head_position + 1;
        prevs[i] := head_hash;
        head_hash := sha256(head_hash || int8send(head_position) || b_envelopes[i] || b_datas[i]);
        positions[i] := head_position;
        hashes[i] := head_hash;
        accepted := accepted + 1;
    END LOOP;

    IF accepted > 0 THEN  -- as the classic path: no insert (and no notification) when every append was refused
        INSERT INTO events (position, stream_id, stream_version, event_id, event_type, recorded_at, data, prev_hash, hash)
        SELECT positions[i], b_stream_ids[i], 0, b_event_ids[i], b_event_types[i], b_recorded_at, b_datas[i],
               prevs[i], hashes[i]
        FROM generate_subscripts(b_event_ids, 1) AS i
        WHERE positions[i] IS NOT NULL
        ORDER BY i;
        INSERT INTO lineage (jti, parent_jti, root_jti, depth, subject_iss, subject_sub, origin_iss, origin_sub,
                             client_id, audience, scope, act, issued_at, expires_at, position)
        SELECT x.jti, x.parent, x.root, x.depth, x.siss, x.ssub, coalesce(l.origin_iss, x.siss),
               coalesce(l.origin_sub, x.ssub), x.client, x.aud, x.scope, x.act, x.iat, x.exp, positions[x.a]
        FROM unnest(x_append, x_jti, x_parent, x_root, x_depth, x_subject_iss, x_subject_sub, x_client, x_audience,
                    x_scope, x_act, x_issued_at, x_expires_at)
             WITH ORDINALITY AS x(a, jti, parent, root, depth, siss, ssub, client, aud, scope, act, iat, exp, ord)
        LEFT JOIN lineage l ON l.jti = x.parent
        WHERE positions[x.a] IS NOT NULL
        ORDER BY x.ord
        ON CONFLICT (jti) DO NOTHING;
    END IF;
    RETURN QUERY SELECT refusals[i], positions[i], prevs[i], hashes[i]
                 FROM generate_subscripts(b_event_ids, 1) AS i ORDER BY i;
END
$fn$
"""

_CALL = (
    "SELECT o_refusal, o_position, o_prev_hash, o_hash FROM baton_append_exchanges("
    + ", ".join(f"${n}" for n in range(1, 27))
    + ")"
)


def one_statement_call(batch: Sequence[PendingAppend], fresh: FreshRecords) -> tuple[str, list[Any]] | None:
    """The call of ``baton_append_exchanges`` for ``batch``, or None when the batch must go the classic way."""
    exchanges: list[list[Any]] = [[] for _ in range(14)]
    presented: list[list[Any]] = [[] for _ in range(5)]
    issued: set[str] = set()
    for number, item in enumerate(batch, start=1):
        event, condition = item.events[0], item.condition
        if not isinstance(event, TokenExchanged):
            if condition is not None or event_type(event) in _HANDLED:
                return None  # a revocation, or a condition only the classic path can judge
            continue
        if not isinstance(condition, ExchangeCondition) or event.issued_jti in issued:
            return None
        issued.add(event.issued_jti)
        row = (
            number, event.issued_jti, event.parent_jti, event.root_jti, event.depth, event.subject_iss,
            event.subject_sub, event.client_id, _dumps(event.audience), _dumps(event.scope),
            _dumps(event.act) if event.act else None, event.issued_at, event.expires_at, event.at,
        )
        for column, value in zip(exchanges, row, strict=True):
            column.append(value)
        for token in condition.presented:
            for column, value in zip(presented, (number, token.role, token.iss, token.sub, token.issued_at), strict=True):
                column.append(value)
    if any(parent in issued for parent in exchanges[2] if parent is not None):
        return None  # a parent in the same batch: its origin is not in the lineage yet
    return _CALL, [*fresh.arguments(), *exchanges, *presented]
