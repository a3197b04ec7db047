"""The temporal result store: apply osquery runs, read rows as of a time, prune.

Rules (``../shared/osquery/protocol.md`` section 2, "Server rule"):

* A full-state run (snapshot, or a ``counter == 0`` baseline) confirms every row it
  carries and closes, at the run's time, every open row it does not carry. A run split
  over several log posts closes rows the later parts carry; those parts reopen them
  (a row closed *at exactly* the run's time by the same run is reopened, not duplicated).
* A differential run applies removed, then added. A removal whose addition has not
  arrived yet (out-of-order delivery) leaves a tombstone that the late addition fills.
* Counters: a diff run below the applied counter is a redelivery and is skipped,
  unless it fills a recorded gap; a jump past ``counter + 1`` records a ``counter_gap``
  marker; an epoch change records ``epoch_change``; a baseline after diffs records
  ``rebaseline`` (rows removed in between were never reported).

Names and rows are written in the store's encoding (``storage.encoding``: NUL escaped on
PostgreSQL); a row's hash is of the row as sent, so it is the same on either database.

Everything for one host happens in the caller's transaction, under the caller's lock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, text
from sqlalchemy.orm import Session

from storage import partitions
from storage.base import in_chunks
from storage.encoding import Encoder, encoder_for
from storage.models import DataLoss as DataLoss  # the record type gaps are returned as
from storage.models import Host, QueryState, ResultRow
from storage.rejected import is_data_error, refusal
from storage.rowio import (
    REMOVED_AT,
    Confirming,
    NewRow,
    Stored,
    Wanted,
    confirm_open,
    load_rows,
    read_streams,
    write_rows,
    write_streams,
)
from storage.runs import Run, row_hash, split_query_name


@dataclass(frozen=True)
class ChangedRow:
    """A row that became present or stopped being present: its hash, its columns as
    stored, and when it first appeared (None for a tombstone's row)."""

    hash: str
    columns: Mapping[str, str]
    first_seen: int | None


@dataclass(frozen=True)
class AppliedRows:
    """What one applied run changed of a query's current rows: ``opened`` became present,
    ``closed`` stopped being present. For a full-state run these are the real change the
    store worked out, not the run's rows; ``baseline`` is a ``counter = 0`` run that is
    not a snapshot. ``name`` is the name as stored, ``query`` its pack query name."""

    name: str
    query: str
    opened: tuple[ChangedRow, ...]
    closed: tuple[ChangedRow, ...]
    full_state: bool
    baseline: bool = False


@dataclass
class ApplyStats:
    """What one batch did, for logs and tests; ``applied`` holds the row changes of the
    runs whose query the caller asked for (``apply_runs``'s ``collect``), in run order."""

    runs: int = 0
    skipped_runs: int = 0
    opened: int = 0
    closed: int = 0
    names: set[str] = field(default_factory=set)
    markers: list[str] = field(default_factory=list)
    rejected: int = 0  # lines quarantined instead of stored
    applied: list[AppliedRows] = field(default_factory=list)

    def add(self, other: ApplyStats) -> None:
        self.runs += other.runs
        self.skipped_runs += other.skipped_runs
        self.opened += other.opened
        self.closed += other.closed
        self.names |= other.names
        self.markers += other.markers
        self.rejected += other.rejected
        self.applied += other.applied


class _Changes:
    """Row changes of one run, gathered while it is applied (only for collected queries)."""

    def __init__(self) -> None:
        self.opened: list[ChangedRow] = []
        self.closed: list[ChangedRow] = []


@dataclass
class _Planned:
    """A run its stream's counters accepted, waiting for its rows to be applied.
    ``run.name`` is the name as stored."""

    run: Run
    query: str
    full_state: bool
    changes: _Changes | None
    added: Counter[str] = field(default_factory=Counter)  # copies per row hash
    removed: Counter[str] = field(default_factory=Counter)
    rows: dict[str, Mapping[str, str]] = field(default_factory=dict)  # hash -> as stored

    def hash_rows(self, enc: Encoder) -> None:
        """Copies per row hash (of the row as sent), and each row as the store writes it."""
        for rows, counts in ((self.run.removed, self.removed), (self.run.added, self.added)):
            for row in rows:
                h = row_hash(row)
                counts[h] += 1
                self.rows[h] = enc.row(row)


@dataclass
class _Writes:
    """What a wave writes: new rows (and tombstones), and stored rows it changed."""

    inserts: list[NewRow] = field(default_factory=list)
    touched: list[Stored] = field(default_factory=list)


@dataclass(slots=True)
class _Stream:
    """Where one query name's differential stream stands: a ``query_states`` row read as
    a tuple and written back once per batch (``_moved``), only if a run moved it.
    The ORM would build, track and flush an object for each, and SQLAlchemy's statement
    machinery cost a differential post more than its rows' writes (``storage.rowio``
    sends both to the driver)."""

    name: str
    pack: str | None
    query: str
    epoch: int
    counter: int
    last_unix_time: int
    updated_at: int
    zero_counter_diffs: bool
    stored: tuple[Any, ...] | None = None  # the fields as read; None for a new stream

    def fields(self) -> tuple[Any, ...]:
        return (
            self.epoch,
            self.counter,
            self.last_unix_time,
            self.updated_at,
            self.zero_counter_diffs,
        )


def _load_streams(session: Session, host_id: int, names: Collection[str]) -> dict[str, _Stream]:
    """The host's streams of ``names`` (as stored), each with its fields as read."""
    streams = {}
    for row in read_streams(session, host_id, sorted(names)):
        stream = _Stream(*row)
        stream.stored = stream.fields()
        streams[stream.name] = stream
    return streams


def _moved(streams: Iterable[_Stream]) -> list[tuple[Any, ...]]:
    """The streams that are new or that runs moved, as ``write_streams`` takes them."""
    return [
        (
            s.name,
            s.pack,
            s.query,
            s.epoch,
            s.counter,
            s.last_unix_time,
            s.updated_at,
            s.zero_counter_diffs,
        )
        for s in streams
        if s.stored is None or s.stored != s.fields()
    ]


def apply_runs(
    session: Session,
    host_id: int,
    runs: Sequence[Run],
    now: int,
    known_packs: Iterable[str] = (),
    silent_counters: Collection[str] = (),
    collect: Callable[[str], bool] | None = None,
) -> ApplyStats:
    """Apply ``runs`` (in log order) for one host.

    ``silent_counters`` names queries whose counter may advance without a line reaching
    the server (``"removed": false`` drops removal-only runs from the log), so a jump in
    their counter is not data loss. ``collect`` says by pack query name which queries'
    row changes to return in ``ApplyStats.applied`` (detection reads a few queries;
    gathering every query's would cost for nothing).

    Each run's counters are checked in log order first; then the accepted runs' rows are
    applied in waves (the first run of each name, then the second, ...): runs of
    different names touch different rows, so a wave is applied with one statement of
    each kind (``storage.rowio``) whatever the number of its runs and rows.
    """
    stats = ApplyStats()
    enc = encoder_for(session)
    states = _load_streams(session, host_id, {enc.text(run.name) for run in runs})
    packs = list(known_packs)
    planned: list[_Planned] = []
    for sent in runs:
        run = replace(sent, name=enc.text(sent.name))  # the name as stored, for every query
        state = states.get(run.name)
        if state is None:
            qn = split_query_name(sent.name, packs)
            pack = None if qn.pack is None else enc.text(qn.pack)
            state = _Stream(run.name, pack, enc.text(qn.query), run.epoch, -1, 0, now, False)
            states[run.name] = state
        silent = sent.name in silent_counters
        full = _accept(session, host_id, state, run, now, stats, silent)
        if full is None:
            stats.skipped_runs += 1
            continue
        stats.runs += 1
        stats.names.add(sent.name)
        changes = _Changes() if collect is not None and collect(state.query) else None
        planned.append(_Planned(run, state.query, full, changes))
    moved = _moved(states.values())
    waves = _waves(planned)
    if not waves:  # every run was a redelivery: only counters may have moved
        write_streams(session, host_id, moved)
    for k, wave in enumerate(waves):  # the first wave's write carries the counters
        _apply_wave(session, host_id, wave, stats, enc, moved if k == 0 else ())
    for p in planned:
        if p.changes is not None:
            stats.applied.append(
                AppliedRows(
                    p.run.name,
                    p.query,
                    tuple(p.changes.opened),
                    tuple(p.changes.closed),
                    p.full_state,
                    baseline=p.full_state and not p.run.snapshot,
                )
            )
    return stats


def apply_runs_one_by_one(
    session: Session,
    host_id: int,
    runs: Sequence[Run],
    now: int,
    known_packs: Iterable[str] = (),
    silent_counters: Collection[str] = (),
    collect: Callable[[str], bool] | None = None,
) -> tuple[ApplyStats, list[tuple[Run, str]]]:
    """Apply each run under its own savepoint: one the database refuses with a data
    error (``storage.rejected.is_data_error``) is rolled back alone and returned with the
    database's reason, the others are applied. Any other error propagates.
    """
    stats = ApplyStats()
    refused: list[tuple[Run, str]] = []
    for run in runs:
        try:
            with session.begin_nested():
                one = apply_runs(
                    session, host_id, [run], now, known_packs, silent_counters, collect
                )
        except Exception as exc:
            if not is_data_error(exc):
                raise
            refused.append((run, refusal(exc)))
            continue
        stats.add(one)
    return stats, refused


def _accept(
    session: Session,
    host_id: int,
    state: _Stream,
    run: Run,
    now: int,
    stats: ApplyStats,
    silent_counter: bool = False,
) -> bool | None:
    """Check the run against the stream's counters and move them on: whether it is a
    full-state run, or None for a redelivery (skipped)."""
    if not run.snapshot and run.counter == 0 and run.removed:
        state.zero_counter_diffs = True
    full_state = run.snapshot or (run.looks_like_baseline and not state.zero_counter_diffs)
    fresh = state.counter < 0
    if not fresh and run.epoch != state.epoch:
        _marker(
            session,
            stats,
            host_id,
            run,
            now,
            "epoch_change",
            detail=f"epoch {state.epoch} -> {run.epoch}",
        )
        state.counter, state.last_unix_time = -1, 0
    elif full_state and not run.snapshot:
        if not fresh and state.counter > 0 and run.unix_time > state.last_unix_time:
            _marker(
                session,
                stats,
                host_id,
                run,
                now,
                "rebaseline",
                detail=f"counter {state.counter} -> 0; removals in between were not reported",
            )
    elif not run.snapshot:
        # Same counter and time as the last run = the rest of a run that the 1,024-line
        # limit split across posts (redelivered posts never get here: see node_service).
        if not fresh and (
            run.counter < state.counter
            or (run.counter == state.counter and run.unix_time < state.last_unix_time)
        ):
            if not _fill_gap(session, host_id, run, now):
                return None
        else:
            first_missing = 0 if fresh else state.counter + 1
            if fresh and run.counter > 0:
                first_missing = 1  # an empty counter-0 baseline is invisible in event format
            if run.counter > first_missing and not silent_counter:
                _marker(
                    session,
                    stats,
                    host_id,
                    run,
                    now,
                    "counter_gap",
                    first=first_missing,
                    last=run.counter - 1,
                )
    state.epoch = run.epoch
    # A baseline restarts the stream at 0; otherwise a late run never moves it back.
    state.counter = 0 if full_state and not run.snapshot else max(state.counter, run.counter)
    state.last_unix_time = max(state.last_unix_time, run.unix_time)
    state.updated_at = now
    return full_state


def _marker(
    session: Session,
    stats: ApplyStats,
    host_id: int,
    run: Run,
    now: int,
    kind: str,
    *,
    first: int | None = None,
    last: int | None = None,
    detail: str = "",
) -> None:
    if kind == "counter_gap" and not detail:
        detail = f"counters {first}..{last} of epoch {run.epoch} never arrived"
    session.add(
        DataLoss(
            host_id=host_id,
            name=run.name,
            kind=kind,
            epoch=run.epoch,
            first_missing=first,
            last_missing=last,
            detail=detail,
            unix_time=run.unix_time,
            detected_at=now,
        )
    )
    stats.markers.append(kind)


def _fill_gap(session: Session, host_id: int, run: Run, now: int) -> bool:
    """A late run inside a recorded gap: shrink or split the gap and accept the run."""
    gap = session.scalars(
        select(DataLoss).where(
            DataLoss.host_id == host_id,
            DataLoss.name == run.name,
            DataLoss.kind == "counter_gap",
            DataLoss.epoch == run.epoch,
            DataLoss.resolved_at.is_(None),
            DataLoss.first_missing <= run.counter,
            DataLoss.last_missing >= run.counter,
        )
    ).first()
    if gap is None or gap.first_missing is None or gap.last_missing is None:
        return False
    first, last = gap.first_missing, gap.last_missing
    if first == last:
        gap.resolved_at = now
    elif run.counter == first:
        gap.first_missing = first + 1
    elif run.counter == last:
        gap.last_missing = last - 1
    else:
        gap.last_missing = run.counter - 1
        session.add(
            DataLoss(
                host_id=host_id,
                name=run.name,
                kind="counter_gap",
                epoch=run.epoch,
                first_missing=run.counter + 1,
                last_missing=last,
                detail=gap.detail,
                unix_time=gap.unix_time,
                detected_at=gap.detected_at,
            )
        )
    return True


def _waves(planned: list[_Planned]) -> list[list[_Planned]]:
    """The runs in waves: the first run of each name, then each name's second, ... so a
    name's runs keep their order and no wave holds two runs of one name."""
    waves: list[list[_Planned]] = []
    depth: Counter[str] = Counter()
    for p in planned:
        k = depth[p.run.name]
        depth[p.run.name] += 1
        if k == len(waves):
            waves.append([])
        waves[k].append(p)
    return waves


def _apply_wave(
    session: Session,
    host_id: int,
    wave: list[_Planned],
    stats: ApplyStats,
    enc: Encoder,
    streams: Sequence[tuple[Any, ...]] = (),
) -> None:
    """Apply a wave's rows: one read of the stored rows its hashes touch, each run's
    decisions against them, then one write of each kind and one close of what its
    full-state runs did not confirm; ``streams``, counters to write, go with it."""
    for p in wave:
        p.hash_rows(enc)
    full = {p.run.name: p for p in wave if p.full_state}
    confirming = [Confirming(name, p.run.unix_time, p.added) for name, p in full.items()]
    confirmed = dict(zip(full, confirm_open(session, host_id, confirming), strict=True))
    # A run only ever touches rows open, tombstones, or closed at/after its time.
    wanted = [
        Wanted(
            p.run.name,
            p.added.keys() - confirmed[p.run.name]
            if p.full_state
            else p.added.keys() | p.removed.keys(),
            p.run.unix_time,
        )
        for p in wave
    ]
    writes = _Writes()
    for p, existing in zip(wave, load_rows(session, host_id, wanted), strict=True):
        if p.full_state:
            _full_state_rows(host_id, p, confirmed[p.run.name], existing, writes)
        else:
            _diff_rows(host_id, p, existing, writes, stats)
    stats.opened += sum(1 for r in writes.inserts if r[REMOVED_AT] is None)
    returned = {name for name, p in full.items() if p.changes is not None}
    closing = [(name, p.run.unix_time) for name, p in full.items()]
    closed = write_rows(
        session, host_id, writes.touched, writes.inserts, closing, returned, streams
    )
    stats.closed += len(closed)
    for row in closed:
        changes = full[row.name].changes
        if changes is not None:
            changes.closed.append(ChangedRow(row.row_hash, row.columns or {}, row.first_seen))


def _full_state_rows(
    host_id: int,
    p: _Planned,
    confirmed: set[str],
    existing: Mapping[str, list[Stored]],
    writes: _Writes,
) -> None:
    """A full-state run confirms its rows: an open row takes the run's copies (done in
    bulk by ``confirm_open`` for ``confirmed``), a row this same run closed (an earlier
    part of it) reopens, any other is new. The close of the rows it does not carry
    follows in ``_apply_wave``."""
    t, changes = p.run.unix_time, p.changes
    for h, n in p.added.items():
        if h in confirmed:
            continue
        candidates = existing.get(h, [])
        open_row = next(
            (r for r in candidates if r.removed_at is None and r.first_seen is not None), None
        )
        closed_now = next(
            (r for r in candidates if r.removed_at == t and r.first_seen is not None), None
        )
        if open_row is not None:
            open_row.set(copies=open_row.copies + n if open_row.seen_at == t else n, seen_at=t)
            writes.touched.append(open_row)
        elif closed_now is not None:
            closed_now.set(removed_at=None, copies=n, seen_at=t)
            writes.touched.append(closed_now)
            if changes is not None:
                changes.opened.append(ChangedRow(h, p.rows[h], closed_now.first_seen))
        else:
            writes.inserts.append(_new_row(host_id, p.run.name, h, p.rows[h], n, t))
            if changes is not None:
                changes.opened.append(ChangedRow(h, p.rows[h], t))


def _diff_rows(
    host_id: int,
    p: _Planned,
    existing: Mapping[str, list[Stored]],
    writes: _Writes,
    stats: ApplyStats,
) -> None:
    """A differential run applies removed, then added; a removal with no row to remove
    leaves a tombstone that a late addition fills."""
    t, changes, name = p.run.unix_time, p.changes, p.run.name
    for h, n in p.removed.items():
        candidates = existing.get(h, [])
        open_row = next(
            (r for r in candidates if r.removed_at is None and (r.first_seen or 0) <= t), None
        )
        if open_row is not None:
            if open_row.copies - n <= 0:
                open_row.set(copies=0, removed_at=t)
                stats.closed += 1
                if changes is not None:
                    changes.closed.append(ChangedRow(h, p.rows[h], open_row.first_seen))
            else:
                open_row.set(copies=open_row.copies - n)
            writes.touched.append(open_row)
        else:
            writes.inserts.append((host_id, name, h, p.rows[h], n, None, t, t))  # a tombstone
    for h, n in p.added.items():
        candidates = existing.get(h, [])
        tomb_row = next(
            (r for r in candidates if r.first_seen is None and (r.removed_at or 0) >= t), None
        )
        open_row = next((r for r in candidates if r.removed_at is None), None)
        if tomb_row is not None:
            tomb_row.set(first_seen=t, copies=n, seen_at=t)
            writes.touched.append(tomb_row)
        elif open_row is not None:
            open_row.set(copies=open_row.copies + n, first_seen=min(open_row.first_seen or t, t))
            writes.touched.append(open_row)
        else:
            writes.inserts.append(_new_row(host_id, name, h, p.rows[h], n, t))
            if changes is not None:
                changes.opened.append(ChangedRow(h, p.rows[h], t))


def _new_row(
    host_id: int, name: str, h: str, columns: Mapping[str, str], copies: int, t: int
) -> NewRow:
    """A row first seen at ``t``, open."""
    return (host_id, name, h, columns, copies, t, None, t)


def present_at(at: int) -> ColumnElement[bool]:
    """The rows that existed at ``at``: added by then (or a tombstone, whose addition
    predates the collected history) and not removed by then."""
    return and_(
        or_(ResultRow.first_seen.is_(None), ResultRow.first_seen <= at),
        or_(ResultRow.removed_at.is_(None), ResultRow.removed_at > at),
    )


def rows_at(session: Session, host_id: int, name: str, at: int) -> list[ResultRow]:
    """The rows of ``name`` (as the host logs it) that existed on the host at ``at``.

    A row whose ``first_seen`` is NULL was removed before its addition ever reached
    the server (it predates the collected history): it counts as present until removed.
    Columns are as stored: ``storage.encoding.unescape_row`` gives them as sent.
    """
    name = encoder_for(session).text(name)
    return list(
        session.scalars(
            select(ResultRow)
            .where(
                ResultRow.host_id == host_id,
                ResultRow.name == name,
                present_at(at),
            )
            .order_by(ResultRow.first_seen, ResultRow.id)
        )
    )


def columns_at(
    session: Session, host_id: int, name: str, at: int, since: int | None = None
) -> list[dict[str, str]]:
    """The columns of the rows ``rows_at`` gives, as stored; with ``since``, only rows
    that appeared at or after it (an event query's recent rows)."""
    stmt = select(ResultRow.columns).where(
        ResultRow.host_id == host_id, ResultRow.name == name, present_at(at)
    )
    if since is not None:
        stmt = stmt.where(ResultRow.first_seen >= since)
    return [dict(c) for c in session.scalars(stmt)]


def open_rows(session: Session, host_id: int, name: str) -> list[ChangedRow]:
    """The rows of stored name ``name`` that are present now (open), whatever their times:
    the state that ``AppliedRows`` changes move forward."""
    stmt = select(ResultRow.row_hash, ResultRow.columns, ResultRow.first_seen).where(
        ResultRow.host_id == host_id, ResultRow.name == name, ResultRow.removed_at.is_(None)
    )
    return [ChangedRow(h, dict(c), first) for h, c, first in session.execute(stmt)]


def open_row_counts(session: Session, host_id: int) -> dict[str, int]:
    """Stored query name -> how many of its rows are open (present now) on the host."""
    return {
        name: count
        for name, count in session.execute(
            select(ResultRow.name, func.count())
            .where(ResultRow.host_id == host_id, ResultRow.removed_at.is_(None))
            .group_by(ResultRow.name)
        )
    }


def data_loss(session: Session, host_id: int | None = None) -> list[tuple[DataLoss, str]]:
    """The data-loss markers (of one host, or all) with their host's identifier, oldest
    first."""
    stmt = select(DataLoss, Host.host_identifier).join(Host, Host.id == DataLoss.host_id)
    if host_id is not None:
        stmt = stmt.where(DataLoss.host_id == host_id)
    return [(marker, ident) for marker, ident in session.execute(stmt.order_by(DataLoss.id))]


def change_times(session: Session, host_id: int, since: int) -> list[int]:
    """Each time at or after ``since`` a row of the host appeared, in order."""
    times = session.scalars(
        select(ResultRow.first_seen)
        .where(ResultRow.host_id == host_id, ResultRow.first_seen >= since)
        .distinct()
        .order_by(ResultRow.first_seen)
    )
    return [t for t in times if t is not None]


def current_column_values(
    session: Session, host_ids: Iterable[int], pack: str, query: str, column: str
) -> dict[int, set[str]]:
    """host id -> the values of ``column`` in the rows of ``pack``'s ``query`` that each
    host has now; hosts that never sent that query are absent."""
    found: dict[int, set[str]] = {}
    for chunk in in_chunks(list(host_ids)):
        states = select(QueryState.host_id, QueryState.name).where(
            QueryState.host_id.in_(chunk), QueryState.pack == pack, QueryState.query == query
        )
        for host_id, _ in session.execute(states):
            found.setdefault(host_id, set())
        rows = (
            select(ResultRow.host_id, ResultRow.columns)
            .join(
                QueryState,
                and_(QueryState.host_id == ResultRow.host_id, QueryState.name == ResultRow.name),
            )
            .where(
                QueryState.host_id.in_(chunk),
                QueryState.pack == pack,
                QueryState.query == query,
                ResultRow.removed_at.is_(None),
            )
        )
        for host_id, values in session.execute(rows):
            value = (values or {}).get(column)
            if isinstance(value, str):
                found[host_id].add(value)
    return found


def query_names(session: Session, host_id: int) -> list[QueryState]:
    return list(
        session.scalars(
            select(QueryState).where(QueryState.host_id == host_id).order_by(QueryState.name)
        )
    )


@dataclass(frozen=True)
class Pruned:
    """What ``prune`` removed (or, as a dry run, would remove): ``rows`` in all, of them
    ``partition_rows`` in the day partitions dropped whole (``partitions``, PostgreSQL
    only; their count is the planner's once ANALYZE has run) and ``deleted`` one by one."""

    partitions: tuple[str, ...]
    partition_rows: int
    deleted: int

    @property
    def rows(self) -> int:
        return self.partition_rows + self.deleted


def prune(session: Session, older_than: int, dry_run: bool = False) -> Pruned:
    """Remove rows closed before ``older_than``; open rows are never pruned. On
    PostgreSQL the days closed before it are dropped whole (``storage.partitions``) and
    only the rest (the cutoff's own day, odd times) is deleted row by row."""
    days = partitions.prune_days(session, older_than, dry_run)
    deleted = 0
    for table in partitions.holding_older(session, older_than):
        older = f'FROM "{table}" WHERE removed_at < :cutoff'
        stmt = text(f"SELECT count(*) {older}" if dry_run else f"DELETE {older}")
        result = session.execute(stmt, {"cutoff": older_than})
        deleted += int(result.scalar() or 0) if dry_run else result.rowcount or 0  # type: ignore[attr-defined]
    return Pruned(tuple(days.dropped), days.dropped_rows, deleted)
