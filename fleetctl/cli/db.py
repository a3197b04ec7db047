"""``fleetctl db upgrade|current|prune|analyst-role``: the schema (through Alembic only),
retention, and PostgreSQL's analyst role for ``fleetctl sql``."""

from __future__ import annotations

import time

import click

from fleetctl.cli.client import stored_context
from fleetctl.cli.groups import Group
from fleetctl.cli.options import setting_option
from fleetctl.server.audit_trail import local_entry
from fleetctl.settings import Settings
from fleetctl.timeutil import iso, parse_duration
from storage import analyst_role, audit
from storage import campaigns as campaign_store
from storage import results as result_store
from storage.database import ensure_database, shown, sqlite_path
from storage.engine import is_sqlite, make_engine, make_sessionmaker, session_scope
from storage.migrate import current_revision, head_revision, upgrade

db_option = setting_option(
    "db",
    help="Database URL (default: the store `fleetctl serve` or `up` last ran on, from the"
    " context file; else sqlite:///<FLEETCTL_HOME>/fleet.db).",
)
ONE_DAY = 86_400


def _url(db: str | None, *, must_exist: bool = True) -> str:
    """The store a ``db`` command works on: ``--db``/``FLEETCTL_DB``, else the one the
    server last ran on, else the default SQLite file, which must exist unless the command
    creates it (an empty new store would only hide a mistyped home)."""
    if db:
        return db
    stored = stored_context().get("db")
    if stored:
        return stored
    url = Settings().db_url
    path = sqlite_path(url)
    if must_exist and path is not None and not path.exists():
        raise click.ClickException(
            f"no store at {path}: run `fleetctl up` or `fleetctl serve` first, or name the"
            " store with --db URL (or FLEETCTL_DB)"
        )
    return url


@click.group(cls=Group)
def db() -> None:
    """Database schema and retention."""


@db.command("upgrade")
@db_option
def db_upgrade(db: str | None) -> None:
    """Apply Alembic migrations up to the newest revision; on PostgreSQL, then create or
    update the analyst role as far as this login may (and print what is left)."""
    url = _url(db, must_exist=False)
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif ensure_database(url):
        click.echo(f"created database {shown(url)}")
    engine = make_engine(url)
    try:
        upgrade(engine)
        click.echo(f"schema at {current_revision(engine)} (head {head_revision()})")
        if not is_sqlite(url):
            _report(analyst_role.provision(engine))
    finally:
        engine.dispose()


@db.command("analyst-role")
@click.option(
    "--print-sql",
    is_flag=True,
    help="Print every statement for review (or for a superuser) instead of running them.",
)
@db_option
def db_analyst_role(print_sql: bool, db: str | None) -> None:
    """The PostgreSQL login role of `fleetctl sql`: SELECT on the hunting views only.

    Creates the role's password in the store if it has none; the printed SQL sets it as
    a SCRAM verifier, never in plain text."""
    url = _url(db)
    if is_sqlite(url):
        raise click.ClickException("SQLite needs no analyst role: its connections are guarded")
    engine = make_engine(url)
    try:
        if print_sql:
            with engine.begin() as conn:
                click.echo(analyst_role.plan(conn).script(), nl=False)
        else:
            _report(analyst_role.provision(engine))
    finally:
        engine.dispose()


def _report(done: analyst_role.Provisioned) -> None:
    applied = ", ".join(done.applied) or "nothing"
    click.echo(f"analyst role {done.role}: applied {applied}")
    if done.pending_sql:
        click.echo(
            "a superuser must still run this SQL on the same database"
            " (until then `fleetctl sql` refuses to run):",
            err=True,
        )
        click.echo(done.pending_sql, nl=False)


@db.command("current")
@db_option
def db_current(db: str | None) -> None:
    """Show the schema revision of the database."""
    engine = make_engine(_url(db))
    current = current_revision(engine)
    head = head_revision()
    hint = "" if current == head else " - run fleetctl db upgrade"
    click.echo(f"{current or 'empty'} (head {head}){hint}")
    engine.dispose()


@db.command("prune")
@click.option("--older-than", "older_than", required=True, help="Retention age, e.g. 90d.")
@click.option("--dry-run", is_flag=True, help="Count what would go; delete nothing.")
@click.option("--yes", is_flag=True, help="Confirm a retention age under one day.")
@db_option
def db_prune(older_than: str, dry_run: bool, yes: bool, db: str | None) -> None:
    """Delete what is older than the retention age: result rows closed before it (open
    rows are kept), and live queries and hunt runs that expired before it (each hunt's
    latest run is kept as the baseline of its next --diff).

    On PostgreSQL whole days of closed rows are dropped as partitions; the output names
    them and their rows (the planner's count) beside the rows deleted one by one.

    Each prune, a dry run too, goes into the audit trail (by user `local`) in its own
    transaction: with its age, cutoff and what it removed."""
    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from exc
    if age < ONE_DAY and not (yes or dry_run):
        raise click.UsageError(
            f"--older-than {older_than} keeps less than a day of history; add --yes if that"
            " is meant (--dry-run shows what would go)"
        )
    url = _url(db)
    engine = make_engine(url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            cutoff = int(time.time()) - age
            removed = result_store.prune(session, cutoff, dry_run=dry_run)
            campaigns = campaign_store.prune(session, cutoff)
            if dry_run:
                session.rollback()  # the same statements, counted and undone
            said = _prune_details(older_than, cutoff, dry_run, removed, campaigns)
            audit.append(session, local_entry("fleetctl db prune", said, int(time.time())))
    finally:
        engine.dispose()
    verb = "would prune" if dry_run else "pruned"
    click.echo(
        f"{verb} {removed.rows} closed rows and {campaigns} live queries and hunt runs"
        f" older than {older_than} ({iso(cutoff)}) from {shown(url)}"
    )
    click.echo(_partitions_said(removed, dry_run))


def _prune_details(
    older_than: str, cutoff: int, dry_run: bool, removed: result_store.Pruned, campaigns: int
) -> dict[str, object]:
    """What the audit trail keeps of a prune (as a dry run: what it would remove)."""
    return {
        "older_than": older_than,
        "cutoff": iso(cutoff),
        "dry_run": dry_run,
        "removed": {
            "closed_rows": removed.rows,
            "partitions": list(removed.partitions),
            "live_queries_and_hunt_runs": campaigns,
        },
    }


def _partitions_said(removed: result_store.Pruned, dry_run: bool) -> str:
    """How the closed rows went: day partitions dropped whole, rows deleted one by one."""
    deleted = f"{removed.deleted} rows {'to delete' if dry_run else 'deleted'} one by one"
    if not removed.partitions:
        return f"  no day partition is wholly older; {deleted}"
    names = removed.partitions
    span = names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"
    verb = "would drop" if dry_run else "dropped"
    return (
        f"  {verb} {len(names)} day partitions ({span}) with about {removed.partition_rows}"
        f" rows; {deleted}"
    )
