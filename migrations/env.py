"""Alembic environment: runs migrations online against the URL in the Alembic config."""

from __future__ import annotations

from alembic import context

import storage.models  # noqa: F401  (registers every table on the metadata)
from storage.base import metadata
from storage.engine import make_engine
from storage.partitions import compared

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:  # a migration that refuses must not leave its connections open
        engine.dispose()


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
        include_object=compared,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `fleetctl db upgrade`")
run_migrations_online()
