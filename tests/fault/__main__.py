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

from storage import analyst_role
from tests.fault import durability, hostile
from tests.fault.report import Outcome, print_table

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


class Stores:
    """New, empty stores (a SQLite file, or a database on the shared PostgreSQL), all
    removed again by ``drop_all``, with the analyst roles ``db upgrade`` made for them."""

    def __init__(self, pg_admin: str) -> None:
        self.pg_admin = pg_admin
        self.made: list[str] = []

    def new(self, backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tempfile.mkdtemp(prefix='fleetctl-fault-db-')}/fleet.db"
        name = f"fleetctl_fault_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.pg_admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        return self.pg_admin.rsplit("/", 1)[0] + f"/{name}"

    def drop_all(self) -> None:
        with psycopg.connect(self.pg_admin, autocommit=True) as conn:
            for name in self.made:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f'DROP ROLE IF EXISTS "{analyst_role.role_name(name)}"')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fault")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--quick", action="store_true", help="3 kill -9 rounds, 2 restarts")
    parser.add_argument("--pg-admin", default=PG_ADMIN, help="PostgreSQL to create stores in")
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    args = parser.parse_args(argv)
    backends = args.backends.split(",")
    stores = Stores(args.pg_admin)
    outcomes: list[Outcome] = []
    try:
        for backend in backends:
            if args.only in "kill -9 under load":
                db = stores.new(backend)
                outcomes.append(durability.kill_nine(backend, db, rounds=3 if args.quick else 5))
            outcomes.extend(hostile.run_all(backend, lambda b=backend: stores.new(b), args.only))
        if "postgresql" in backends and args.only in "PostgreSQL crash-restart under load":
            outcomes.append(durability.database_restart(rounds=2 if args.quick else 3))
    finally:
        stores.drop_all()
    print_table(outcomes)
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
