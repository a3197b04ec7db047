"""The store's tables.

The heart is ``result_rows``: a temporal record of which distinct result row of which
scheduled query existed on which host from ``first_seen`` until ``removed_at`` (NULL
while still present). Nothing references it by foreign key and its uniqueness is kept
by the ingest code under a per-host lock, so PostgreSQL partitions it by time: by
``removed_at``, with the open rows in a partition of their own and one partition per day
of closed rows (migration 0014, ``storage.partitions``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    Unicode,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, BigID, bigid_pk, json_doc, unix_ts


class Host(Base):
    """An enrolled osquery node. Which earlier host an enrollment is, is decided by the
    server's host identity (``Settings.host_identity``): cloned machines share ``uuid``."""

    __tablename__ = "hosts"

    id: Mapped[bigid_pk]
    uuid: Mapped[str] = mapped_column(String(128), index=True)
    instance_id: Mapped[str] = mapped_column(String(128), default="", index=True)
    host_identifier: Mapped[str] = mapped_column(String(255), index=True)
    hostname: Mapped[str] = mapped_column(String(255), default="")
    platform: Mapped[str] = mapped_column(String(64), default="")
    platform_type: Mapped[str] = mapped_column(String(16), default="")
    os_name: Mapped[str] = mapped_column(String(255), default="")
    os_version: Mapped[str] = mapped_column(String(255), default="")
    osquery_version: Mapped[str] = mapped_column(String(64), default="")
    node_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    host_details: Mapped[json_doc]
    decorations: Mapped[json_doc | None] = mapped_column(nullable=True)
    enrolled_at: Mapped[unix_ts]
    last_enrolled_at: Mapped[unix_ts]
    last_seen: Mapped[unix_ts]
    enroll_count: Mapped[int] = mapped_column(Integer, default=1)


class EnrollSecret(Base):
    """Accepted enroll secrets, stored as SHA-256 digests only. Each is named, may put
    the hosts it enrolls in a label, and once revoked enrolls nothing (hosts already
    enrolled keep their node keys)."""

    __tablename__ = "enroll_secrets"

    id: Mapped[bigid_pk]
    name: Mapped[str] = mapped_column(String(128), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("labels.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[unix_ts]
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class User(Base):
    """Someone who uses the admin API, with a role (observer < hunter < admin) and an
    argon2 password hash ('' until a password is set: no sign-in)."""

    __tablename__ = "users"

    id: Mapped[bigid_pk]
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[unix_ts]


class ApiToken(Base):
    """Admin API bearer tokens, stored as SHA-256 digests only: each a user's, with a
    role no higher than the user's, an optional expiry and, once revoked, the time."""

    __tablename__ = "api_tokens"

    id: Mapped[bigid_pk]
    user_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[unix_ts]
    expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class SignInFailure(Base):
    """One failed sign-in (a wrong password or unknown user, a refused token at the
    console): from ``address``, for ``user_name`` (None: no name was given). Kept only as
    long as the sign-in limits count it, so every server process shares the count
    (``storage.sign_ins``)."""

    __tablename__ = "sign_in_failures"

    id: Mapped[bigid_pk]
    at: Mapped[unix_ts] = mapped_column(index=True)
    address: Mapped[str] = mapped_column(String(64))
    user_name: Mapped[str | None] = mapped_column(String(128), nullable=True)

    __table_args__ = (
        Index("ix_sign_in_failures_address_at", "address", "at"),
        Index("ix_sign_in_failures_user_name_at", "user_name", "at"),
    )


class QueryState(Base):
    """Where the differential stream of one (host, query name) stands."""

    __tablename__ = "query_states"

    host_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(512), primary_key=True)
    pack: Mapped[str | None] = mapped_column(String(255), nullable=True)
    query: Mapped[str] = mapped_column(String(255))
    epoch: Mapped[int] = mapped_column(BigInteger)
    counter: Mapped[int] = mapped_column(BigInteger)
    last_unix_time: Mapped[unix_ts]
    updated_at: Mapped[unix_ts]
    # Set once this host has sent a counter-0 run that removes rows: its osquery keeps
    # the counter at 0 for diffs, so counter 0 stops meaning "baseline" for this query.
    zero_counter_diffs: Mapped[bool] = mapped_column(Boolean, default=False)


class ResultRow(Base):
    """One distinct row of one query on one host, with its lifetime.

    ``first_seen`` is NULL only for a tombstone: a removal that arrived before the
    addition it undoes (out-of-order delivery); the late addition fills it in.
    ``copies`` keeps osquery's multiset semantics (the same row reported twice).
    ``seen_at`` is the last time a full-state run (baseline or snapshot) confirmed it.
    """

    __tablename__ = "result_rows"

    id: Mapped[bigid_pk]
    host_id: Mapped[int] = mapped_column(BigID)
    name: Mapped[str] = mapped_column(String(512))
    row_hash: Mapped[str] = mapped_column(String(32))
    columns: Mapped[json_doc]
    copies: Mapped[int] = mapped_column(Integer, default=1)
    first_seen: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    removed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    seen_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        Index("ix_result_rows_lookup", "host_id", "name", "row_hash"),
        Index(
            "ix_result_rows_open",
            "host_id",
            "name",
            postgresql_where=text("removed_at IS NULL"),
            sqlite_where=text("removed_at IS NULL"),
        ),
        Index("ix_result_rows_removed_at", "removed_at"),
        # A host's rows of a query present in a window: those closed after its start
        # (SQLite: and the open ones). PostgreSQL takes the open rows from
        # ix_result_rows_open, so ingest's lookup by hash never weighs this index there.
        Index(
            "ix_result_rows_window",
            "host_id",
            "name",
            "removed_at",
            postgresql_where=text("removed_at IS NOT NULL"),
        ),
    )


class DataLoss(Base):
    """A visible marker that part of a host's differential stream is missing or reset."""

    __tablename__ = "data_loss"

    id: Mapped[bigid_pk]
    host_id: Mapped[int] = mapped_column(BigID, ForeignKey("hosts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(512))
    kind: Mapped[str] = mapped_column(String(32))  # counter_gap | epoch_change | rebaseline
    epoch: Mapped[int] = mapped_column(BigInteger)
    first_missing: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_missing: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    unix_time: Mapped[unix_ts]
    detected_at: Mapped[unix_ts]
    resolved_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    __table_args__ = (Index("ix_data_loss_host_name", "host_id", "name"),)


class Delivery(Base):
    """Digests of the last accepted log batch per (host, log type).

    osqueryd resends its oldest unacknowledged lines when a reply is lost, so a batch
    that starts with the previous batch's lines is a redelivery: those lines are skipped.
    """

    __tablename__ = "deliveries"

    host_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    log_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    digests: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[unix_ts]


class StatusLog(Base):
    """osqueryd status (glog) lines."""

    __tablename__ = "status_logs"

    id: Mapped[bigid_pk]
    host_id: Mapped[int] = mapped_column(BigID, ForeignKey("hosts.id", ondelete="CASCADE"))
    unix_time: Mapped[unix_ts]
    severity: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(String(255), default="")
    line: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text)
    version: Mapped[str] = mapped_column(String(64), default="")
    decorations: Mapped[json_doc | None] = mapped_column(nullable=True)

    __table_args__ = (Index("ix_status_logs_host_time", "host_id", "unix_time"),)


class RejectedLine(Base):
    """A log line the store could not hold as sent, kept verbatim with the reason.

    The rest of its batch is stored and acknowledged, so one odd line never blocks a
    host's stream; ``line`` is the line as JSON text with every non-ASCII character
    escaped, so NUL bytes and lone surrogates survive on either database.
    """

    __tablename__ = "rejected_lines"

    id: Mapped[bigid_pk]
    host_id: Mapped[int] = mapped_column(BigID, ForeignKey("hosts.id", ondelete="CASCADE"))
    log_type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(512), default="")  # the query name, if readable
    reason: Mapped[str] = mapped_column(Text)
    line: Mapped[str] = mapped_column(Text)
    received_at: Mapped[unix_ts]

    __table_args__ = (Index("ix_rejected_lines_host_time", "host_id", "received_at"),)


class StoreSecret(Base):
    """Secrets the servers of one store share (the analyst role's password)."""

    __tablename__ = "store_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[unix_ts]


class Carve(Base):
    """A file carve session; blocks are kept until the archive is complete."""

    __tablename__ = "carves"

    id: Mapped[bigid_pk]
    host_id: Mapped[int] = mapped_column(BigID, ForeignKey("hosts.id", ondelete="CASCADE"))
    session_id: Mapped[str] = mapped_column(String(64), unique=True)
    carve_id: Mapped[str] = mapped_column(String(255))
    request_id: Mapped[str] = mapped_column(String(255))
    block_count: Mapped[int] = mapped_column(Integer)
    block_size: Mapped[int] = mapped_column(Integer)
    carve_size: Mapped[int] = mapped_column(BigInteger)
    blocks_received: Mapped[int] = mapped_column(Integer, default=0)
    compression: Mapped[str] = mapped_column(String(16), default="")
    archive: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[unix_ts]
    completed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Bytes of block data stored so far, never more than ``carve_size``; the time of the
    # last block (a carve whose blocks stop coming is expired, its blocks deleted).
    bytes_received: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    expired_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class CarveBlock(Base):
    """One received block of a carve (deleted once the archive is assembled)."""

    __tablename__ = "carve_blocks"

    carve_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("carves.id", ondelete="CASCADE"), primary_key=True
    )
    block_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class PackRecord(Base):
    """A pack as the fleet knows it; its content lives in versions."""

    __tablename__ = "packs"

    id: Mapped[bigid_pk]
    name: Mapped[str] = mapped_column(String(255), unique=True)
    current_version: Mapped[int] = mapped_column(Integer)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[unix_ts]


class PackVersion(Base):
    """One applied version of a pack: the osquery pack object and the labels it targets.

    Versions are never rewritten, so a change can be compared with what hosts ran before.
    """

    __tablename__ = "pack_versions"

    pack_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("packs.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[json_doc | None] = mapped_column(nullable=True)  # NULL = deleted
    labels: Mapped[json_doc]
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[unix_ts]


class Label(Base):
    """A named set of hosts: a SQL membership query (dynamic) or a host list (manual)."""

    __tablename__ = "labels"

    id: Mapped[bigid_pk]
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    query: Mapped[str | None] = mapped_column(Text, nullable=True)
    platform: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_at: Mapped[unix_ts]


class LabelMembership(Base):
    """Which host is in which label, and when a dynamic label was last evaluated on it."""

    __tablename__ = "label_membership"

    label_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("labels.id", ondelete="CASCADE"), primary_key=True
    )
    host_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    member: Mapped[bool] = mapped_column(Boolean)
    evaluated_at: Mapped[unix_ts]


class PathSighting(Base):
    """A path key (``fleetctl.detection``) seen on a host, first and last time."""

    __tablename__ = "path_sightings"

    host_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    path_key: Mapped[str] = mapped_column(String(512), primary_key=True)
    first_seen: Mapped[unix_ts]
    last_seen: Mapped[unix_ts]

    __table_args__ = (Index("ix_path_sightings_key", "path_key"),)


class ParentChild(Base):
    """A child basename a parent basename started on a host (the parent's history)."""

    __tablename__ = "parent_children"

    host_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    parent: Mapped[str] = mapped_column(String(255), primary_key=True)
    child: Mapped[str] = mapped_column(String(255), primary_key=True)
    first_seen: Mapped[unix_ts]

    __table_args__ = (Index("ix_parent_children_parent", "parent"),)


class DetectionHost(Base):
    """Per-host detection settings: an explicit baseline ends the learning window."""

    __tablename__ = "detection_hosts"

    host_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    baselined_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class FindingRecordRow(Base):
    """A path (host, path key) worth an analyst's look, and its triage state.

    Its incidents are ``FindingOccurrence`` rows. ``severity``/``score`` are those of the
    most severe open occurrence; ``pid`` is the newest occurrence's. Status: ``open``,
    ``acked`` (handled: ``acked_by``/``acked_at``/``note`` say by whom, when, why),
    ``reopened`` (an occurrence came after the ack; the ack is kept) or ``suppressed``
    (the path key became a baseline entry)."""

    __tablename__ = "findings"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    host_id: Mapped[int] = mapped_column(BigID, ForeignKey("hosts.id", ondelete="CASCADE"))
    path_key: Mapped[str] = mapped_column(String(512))
    pid: Mapped[int] = mapped_column(BigInteger)
    parent: Mapped[str] = mapped_column(String(255))
    child: Mapped[str] = mapped_column(String(255))
    severity: Mapped[str] = mapped_column(String(16))
    score: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="open")
    new_on_host: Mapped[bool] = mapped_column(Boolean)
    new_on_fleet: Mapped[bool] = mapped_column(Boolean)
    seen_during_learning: Mapped[bool] = mapped_column(Boolean, default=False)
    first_seen: Mapped[unix_ts]
    last_seen: Mapped[unix_ts]
    note: Mapped[str] = mapped_column(Text, default="")
    acked_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    acked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    __table_args__ = (
        Index("ix_findings_host", "host_id"),
        Index("ix_findings_last_seen", "last_seen"),
    )


class FindingOccurrence(Base):
    """One process on a finding's path, (pid, start time), with its evidence as first
    stored. Only ``last_seen`` moves; ``acked_at`` is when an ack covered it (NULL: open)."""

    __tablename__ = "finding_occurrences"

    id: Mapped[bigid_pk]
    finding_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("findings.id", ondelete="CASCADE")
    )
    pid: Mapped[int] = mapped_column(BigInteger)
    start_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    severity: Mapped[str] = mapped_column(String(16))
    score: Mapped[int] = mapped_column(Integer)
    seen_during_learning: Mapped[bool] = mapped_column(Boolean, default=False)
    first_seen: Mapped[unix_ts]
    last_seen: Mapped[unix_ts]
    acked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    document: Mapped[json_doc]

    __table_args__ = (
        Index("ix_finding_occurrences_process", "finding_id", "pid"),
        Index("ix_finding_occurrences_first_seen", "first_seen"),
    )


class FindingChange(Base):
    """A change of a finding's status or severity: when, from what to what, by whom
    (an admin token's name, or ``detection``) and the note given."""

    __tablename__ = "finding_history"

    id: Mapped[bigid_pk]
    finding_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("findings.id", ondelete="CASCADE")
    )
    at: Mapped[unix_ts]
    field: Mapped[str] = mapped_column(String(16))  # status | severity
    old: Mapped[str | None] = mapped_column(String(16), nullable=True)
    new: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    note: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_finding_history_finding", "finding_id"),)


class BaselineVersion(Base):
    """The admin's baseline (ATT&CK's mutable elements + learned keys), versioned."""

    __tablename__ = "baselines"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    body: Mapped[json_doc]
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[unix_ts]


class Campaign(Base):
    """A distributed query sent to a set of hosts: a live query or one run of a hunt."""

    __tablename__ = "campaigns"

    id: Mapped[bigid_pk]
    kind: Mapped[str] = mapped_column(String(16))  # live | hunt
    name: Mapped[str] = mapped_column(String(255), default="")
    sql: Mapped[str] = mapped_column(Text)
    targets: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[unix_ts]
    expires_at: Mapped[unix_ts]


class CampaignTarget(Base):
    """One host of a campaign: queued, sent, done or failed (with osquery's message)."""

    __tablename__ = "campaign_targets"

    campaign_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    host_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[str] = mapped_column(String(16))
    sent_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    done_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    rows: Mapped[json_doc | None] = mapped_column(nullable=True)

    __table_args__ = (Index("ix_campaign_targets_state", "state", "host_id"),)


class Hunt(Base):
    """A scheduled fleet hunt: each firing is a run, a campaign to the targets."""

    __tablename__ = "hunts"

    id: Mapped[bigid_pk]
    name: Mapped[str] = mapped_column(String(255), unique=True)
    sql: Mapped[str] = mapped_column(Text)
    targets: Mapped[str] = mapped_column(String(512))
    schedule_kind: Mapped[str] = mapped_column(String(16))  # cron | every | once
    schedule: Mapped[str] = mapped_column(String(255), default="")
    expires: Mapped[int] = mapped_column(Integer)  # seconds a run stays open
    state: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[unix_ts]


class HuntRun(Base):
    __tablename__ = "hunt_runs"

    hunt_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("hunts.id", ondelete="CASCADE"), primary_key=True
    )
    run: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(BigID, ForeignKey("campaigns.id"))
    fired_at: Mapped[unix_ts]


# APScheduler's SQLAlchemy job store, declared here so Alembic creates it (the job store
# then finds it and creates nothing): the same columns as apscheduler's own definition.
apscheduler_jobs = Table(
    "apscheduler_jobs",
    Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)


class Validation(Base):
    """One purple-team scenario run on one host (``fleetctl validate``): found or missed.

    The host is named as the fleet names it (``uuid`` and ``host_identifier``, what its
    agent enrolled as), not by a host id: a machine validated before (or without) joining
    the fleet keeps its evidence, and coverage matches it to the host row when it enrolls.
    """

    __tablename__ = "validations"

    id: Mapped[bigid_pk]
    host_uuid: Mapped[str] = mapped_column(String(128))
    host_identifier: Mapped[str] = mapped_column(String(255))
    hostname: Mapped[str] = mapped_column(String(255), default="")
    scenario: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # attack | benign
    result: Mapped[str] = mapped_column(String(32))  # detected | missed | quiet | ...
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    agent: Mapped[str] = mapped_column(String(16))  # stock | extension
    finding: Mapped[str] = mapped_column(String(40), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    ran_at: Mapped[unix_ts]
    recorded_at: Mapped[unix_ts]

    __table_args__ = (
        Index("ix_validations_host", "host_uuid", "host_identifier", "scenario", "ran_at"),
    )


class FleetEvent(Base):
    """A change one server process made that every other one must act on soon: a node
    key re-issued or revoked (``kind`` ``node_key``), so the others forget the host's
    cached keys. Read back by time, not by id (ids of concurrent transactions commit out
    of order), and pruned after a few minutes."""

    __tablename__ = "fleet_events"

    id: Mapped[bigid_pk]
    kind: Mapped[str] = mapped_column(String(32))
    host_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    at: Mapped[unix_ts] = mapped_column(index=True)


class DetectionMark(Base):
    """A host with stored detection rows not yet judged: ``version`` counts the host's
    result batches that touched a detection query, ``judged`` is the version its judge
    has judged. Written in the batch's own transaction, so a judge that dies leaves the
    host pending for the worker that takes its hosts over."""

    __tablename__ = "detection_marks"

    host_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    judged: Mapped[int] = mapped_column(BigInteger, default=0)
    rebuild: Mapped[bool] = mapped_column(Boolean, default=False)
    marked_at: Mapped[unix_ts]


class DetectionChange(Base):
    """The detection rows one result batch opened and closed, kept for the host's judge
    when another process stored the batch: the judge moves the host forward from them
    (in version order) instead of rebuilding it. Deleted once judged."""

    __tablename__ = "detection_changes"

    host_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    stored_at: Mapped[unix_ts] = mapped_column(index=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class AuditEntry(Base):
    """One thing an admin did or tried through the admin API: who (``actor``, the
    ``token`` they used, from ``source``), what (``action``: method and route, with its
    ``target`` and ``details``: the SQL text, the targets, the note), when, and how it
    ended (``outcome``, the HTTP ``status``). Append-only: triggers refuse UPDATE and
    DELETE, and ``hash`` chains each entry to the one before (``prev_hash``), so an
    edited or removed entry shows (``storage.audit.verify``)."""

    __tablename__ = "audit_log"

    id: Mapped[bigid_pk]
    at: Mapped[unix_ts] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(128), index=True)
    token: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(255))
    target: Mapped[str] = mapped_column(String(512))
    details: Mapped[json_doc]
    outcome: Mapped[str] = mapped_column(String(16))
    status: Mapped[int] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class DetectionWorker(Base):
    """What one server process's detection worker last said of itself (its
    ``DetectionStatus``), so any process can answer for the whole fleet."""

    __tablename__ = "detection_workers"

    worker: Mapped[str] = mapped_column(String(128), primary_key=True)
    slot: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[unix_ts]
    status: Mapped[json_doc]


class DetectionJob(Base):
    """A replay of detection over stored history (``fleetctl detect --since``), run by
    the server process (``worker``) that accepted it and followed by any other one.

    The worker writes its progress and ``heartbeat_at`` as it goes; a running job whose
    heartbeat stopped lost its worker (``storage.detection_jobs.abandoned``). ``hosts``
    are the host ids to replay, in order: the first ``hosts_done`` of them are done.
    """

    __tablename__ = "detection_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # running | done | failed | cancelled
    since: Mapped[unix_ts]
    until: Mapped[unix_ts]  # the replay's "now": history up to here, then the current state
    hosts: Mapped[json_doc]
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[unix_ts]
    finished_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    heartbeat_at: Mapped[float] = mapped_column(Float)
    worker: Mapped[str] = mapped_column(String(255))
    hosts_total: Mapped[int] = mapped_column(Integer, default=0)
    hosts_done: Mapped[int] = mapped_column(Integer, default=0)
    times_total: Mapped[int] = mapped_column(Integer, default=0)
    times_done: Mapped[int] = mapped_column(Integer, default=0)
    findings: Mapped[int] = mapped_column(Integer, default=0)  # new findings so far
    new_findings: Mapped[json_doc]  # their ids, written now and then and at the end
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_detection_jobs_created_at", "created_at"),)


class SavedQuery(Base):
    """An analyst SQL query kept under a name for every admin of the store to run
    (the console's notebook lists them); saving a name again replaces its SQL."""

    __tablename__ = "saved_queries"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    sql: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    saved_by: Mapped[str] = mapped_column(String(128))
    saved_at: Mapped[unix_ts]
