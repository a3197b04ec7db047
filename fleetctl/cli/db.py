"""``fleetctl db upgrade|current|prune|analyst-role``: the schema (through Alembic only),
retention, and PostgreSQL's analyst role for ``fleetctl sql``."""

from __future__ import annotations

import time

import click

from fleetctl.cli.groups import Group
from fleetctl.cli.options import setting_option
from fleetctl.settings import Settings
from fleetctl.timeutil import parse_duration
from storage import analyst_role
from storage import campaigns as campaign_store
from storage import results as result_store
from storage.engine import is_sqlite, make_engine, make_sessionmaker, session_scope
from storage.migrate import current_revision, head_revision, upgrade

db_option = setting_option("db", help="Database URL (default: sqlite:///<FLEETCTL_HOME>/fleet.db).")


def _url(db: str | None) -> str:
    return Settings(db=db).db_url


@click.group(cls=Group)
def db() -> None:
    """Database schema and retention."""


@db.command("upgrade")
@db_option
def db_upgrade(db: str | None) -> None:
    """Apply Alembic migrations up to the newest revision; on PostgreSQL, then create or
    update the analyst role as far as this login may (and print what is left)."""
    url = _url(db)
    if url.startswith("sqlite:///"):
        Settings().home.mkdir(parents=True, exist_ok=True)
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
@db_option
def db_prune(older_than: str, db: str | None) -> None:
    """Delete what is older than the retention age: result rows closed before it (open
    rows are kept), and live queries and hunt runs that expired before it (each hunt's
    latest run is kept as the baseline of its next --diff)."""
    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from exc
    engine = make_engine(_url(db))
    with session_scope(make_sessionmaker(engine)) as session:
        cutoff = int(time.time()) - age
        removed = result_store.prune(session, cutoff)
        campaigns = campaign_store.prune(session, cutoff)
    engine.dispose()
    click.echo(
        f"pruned {removed} closed rows and {campaigns} live queries and hunt runs"
        f" older than {older_than}"
    )
