"""``python -m tests.fault [--backends sqlite,postgresql] [--quick] [--only TEXT]``

Runs the fault suite against real ``fleetctl serve`` processes: kill -9 and PostgreSQL
crash-restarts under load (the store compared with what the hosts sent), then every
hostile case of ``tests.fault.hostile``. Prints one row per case; exit status 1 when any
case fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid

import psycopg

from tests.fault import durability, hostile
from tests.fault.report import Outcome, print_table

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def _database(backend: str, pg_admin: str) -> str:
    """A new, empty store: a SQLite file, or a database on the shared PostgreSQL."""
    if backend == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp(prefix='fleetctl-fault-db-')}/fleet.db"
    name = f"fleetctl_fault_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_admin.rsplit("/", 1)[0] + f"/{name}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fault")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--quick", action="store_true", help="3 kill -9 rounds, 2 restarts")
    parser.add_argument("--pg-admin", default=PG_ADMIN, help="PostgreSQL to create stores in")
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    args = parser.parse_args(argv)
    backends = args.backends.split(",")
    outcomes: list[Outcome] = []
    for backend in backends:
        if args.only in "kill -9 under load":
            db = _database(backend, args.pg_admin)
            outcomes.append(durability.kill_nine(backend, db, rounds=3 if args.quick else 5))
        outcomes.extend(
            hostile.run_all(backend, lambda b=backend: _database(b, args.pg_admin), args.only)
        )
    if "postgresql" in backends and args.only in "PostgreSQL crash-restart under load":
        outcomes.append(durability.database_restart(rounds=2 if args.quick else 3))
    print_table(outcomes)
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
