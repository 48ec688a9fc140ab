"""Every table Baton's projections keep, as one list of DDL per dialect.

``baton migrate`` applies it as the schema owner, so that an instance running
with ``[store] migrate_on_start = false`` under the runtime role (which may not
create or alter anything) finds the lineage, runner and audit tables in place.
"""

from __future__ import annotations

from .audit import AuditProjection
from .lineage import LineageProjection
from .runner import RUNNER_SCHEMA


def projection_bulk_inserts() -> list[str]:
    """The many-row INSERTs of the lineage and the audit views, whose row types ``baton migrate`` makes."""
    return [*LineageProjection.bulk_inserts, *AuditProjection.bulk_inserts]


def projection_ddl(dialect: str) -> list[str]:
    """Idempotent DDL for the lineage (inline), the projection runner's tables and the audit views."""
    return [*LineageProjection().schema(dialect), *RUNNER_SCHEMA, *AuditProjection().schema(dialect)]
