"""A host's ``distributed/write``: answers count only for queries it was handed.

Any host may be an attacker's machine, and its answers change what others see and get:
dynamic label membership decides which packs hosts receive, and campaign answers are
what analysts read. So an answer is kept only for a query this server gave this host:

* ``fleetctl_campaign_<id>``: a live query or hunt run that targets the host, has not
  expired, and whose hand-out is recorded, in the store (``sent_at``) or in this
  server's queue of hand-outs not yet written (``CampaignQueue.handed_out``);
* ``fleetctl_label_<id>``: a dynamic label that ``LabelQueue.accepts`` for the host
  (its platform covers the host, and this server handed it out or it was due). Manual
  labels change only through the admin API.

Everything else (other ids, manual labels, foreign, unknown or expired campaigns) is
dropped; one status log line for the host and one server log line per request say how
many answers went and which.

Replicas sharing one store write their hand-outs in batches, every second or so: a
campaign answer may reach this server before the replica that handed the query out has
recorded it. An answer to a campaign that targets the host, is open, and has no
recorded hand-out is therefore neither stored nor dropped: the whole request is refused
and osqueryd sends it again (three tries a few seconds apart, then with its next write),
by when the hand-out is recorded, or the campaign has expired and the answer is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from fleetctl import __version__
from fleetctl.errors import BadRequest
from fleetctl.server.campaign_queue import parse_campaign_query_id
from fleetctl.server.label_queue import LabelQueue, parse_label_query_id
from fleetctl.server.node_service import STATUS_FILENAME, lock_host
from storage import campaigns as campaign_store
from storage import labels as label_store
from storage import logs as log_store

log = logging.getLogger("fleetctl.server")

SHOWN_IDS = 5  # dropped ids named in the status log line; the rest are counted
SHOWN_ID_CHARS = 64  # a host chooses its ids: long ones are cut


@dataclass(frozen=True)
class Answer:
    """One query id's answer: osquery's status (0 = ok), error message and rows."""

    query_id: str
    status: int
    message: str
    rows: list[dict[str, str]]


class HandOutNotRecorded(BadRequest):
    """Answers to campaign queries whose hand-out no server has recorded yet (see the
    module docstring); osqueryd resends the request."""


@dataclass(frozen=True)
class Outcome:
    """What a request changed: campaign answers stored, labels evaluated, ids dropped."""

    campaigns: list[int]
    labels: list[int]
    dropped: list[str]


def parse_answers(body: Mapping[str, Any]) -> list[Answer]:
    """The answers of a write body, by query id; a malformed body is refused whole."""
    queries = body.get("queries", {})
    statuses = body.get("statuses", {})
    messages = body.get("messages", {}) or {}
    stats = body.get("stats", {}) or {}  # osqueryd's own resource use: checked, not kept
    for key, value in (
        ("queries", queries),
        ("statuses", statuses),
        ("messages", messages),
        ("stats", stats),
    ):
        if not isinstance(value, dict):
            raise BadRequest(f"{key!r} must be an object keyed by query id")
    answers = []
    for qid in sorted(set(queries) | set(statuses)):
        status = statuses.get(qid, 0)
        if isinstance(status, bool) or not isinstance(status, int):
            raise BadRequest(f"statuses[{qid!r}] must be an integer")
        message = messages.get(qid, "")
        if not isinstance(message, str):
            raise BadRequest(f"messages[{qid!r}] must be a string")
        answers.append(Answer(qid, status, message, _as_str_rows(queries.get(qid, []), qid)))
    return answers


def _as_str_rows(rows: Any, qid: str) -> list[dict[str, str]]:
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BadRequest(f"queries[{qid!r}] must be a list of row objects")
    return [{str(k): "" if v is None else str(v) for k, v in r.items()} for r in rows]


def store_answers(
    session: Session,
    host_id: int,
    family: str,
    answers: list[Answer],
    handed: set[int],
    labels: LabelQueue,
    now: int,
) -> Outcome:
    """Store the answers this host may give, drop and report the rest.

    ``handed``: campaign ids this server handed to the host and has not written as sent
    yet, taken before this transaction reads the store.
    """
    by_campaign: dict[int, Answer] = {}
    by_label: dict[int, Answer] = {}
    dropped: list[str] = []
    for answer in answers:
        if (cid := parse_campaign_query_id(answer.query_id)) is not None:
            by_campaign[cid] = answer
        elif (label_id := parse_label_query_id(answer.query_id)) is not None:
            by_label[label_id] = answer
        else:
            dropped.append(answer.query_id)
    campaigns = _campaigns_kept(session, host_id, by_campaign, handed, now)
    label_ids = _labels_kept(session, host_id, family, by_label, labels, now)
    dropped += [a.query_id for cid, a in by_campaign.items() if cid not in campaigns]
    dropped += [a.query_id for lid, a in by_label.items() if lid not in label_ids]
    if label_ids or dropped:
        # Label answers replace per-host rows; a campaign answer is a single keyed update
        # and needs no lock (most of a fleet answering a live query).
        lock_host(session, host_id)
    for cid in campaigns:
        answer = by_campaign[cid]
        campaign_store.record_answer(
            session, cid, host_id, answer.status, answer.message, answer.rows, now
        )
    for label_id in label_ids:
        answer = by_label[label_id]
        member = answer.status == 0 and bool(answer.rows)
        label_store.record_evaluation(session, label_id, host_id, member, now)
    if dropped:
        _report_dropped(session, host_id, dropped, now)
    return Outcome(campaigns, label_ids, sorted(dropped))


def _campaigns_kept(
    session: Session, host_id: int, answers: dict[int, Answer], handed: set[int], now: int
) -> list[int]:
    """The campaign ids whose answers are stored.

    Raises ``HandOutNotRecorded`` when an open target of this host has no recorded
    hand-out (another replica may not have written it yet).
    """
    if not answers:
        return []
    targets = campaign_store.open_targets(session, host_id, list(answers), now)
    unrecorded = sorted(cid for cid, sent in targets.items() if not sent and cid not in handed)
    if unrecorded:
        shown = ", ".join(printable_id(answers[cid].query_id) for cid in unrecorded[:SHOWN_IDS])
        log.info("host %s answered %s before its hand-out was recorded", host_id, shown)
        raise HandOutNotRecorded(
            f"answers to {shown} arrived before their hand-out was recorded; send them again"
        )
    return sorted(targets)


def _labels_kept(
    session: Session,
    host_id: int,
    family: str,
    answers: dict[int, Answer],
    labels: LabelQueue,
    now: int,
) -> list[int]:
    """The label ids whose answers change this host's membership."""
    if not answers:
        return []
    return sorted(
        label.id
        for label, answered in label_store.dynamic_labels_for(session, host_id, list(answers))
        if labels.accepts(host_id, family, label, answered, now)
    )


def printable_id(query_id: str) -> str:
    """A host-chosen id as it may be printed and stored: cut, every odd character escaped
    (NUL and lone surrogates would not even fit a PostgreSQL text column)."""
    cut = query_id[:SHOWN_ID_CHARS]
    return ascii(cut) + ("..." if len(query_id) > SHOWN_ID_CHARS else "")


def _report_dropped(session: Session, host_id: int, dropped: list[str], now: int) -> None:
    """One status log line for the host and one server log line for the whole request."""
    shown = ", ".join(printable_id(qid) for qid in sorted(dropped)[:SHOWN_IDS])
    more = f" and {len(dropped) - SHOWN_IDS} more" if len(dropped) > SHOWN_IDS else ""
    message = (
        f"dropped {len(dropped)} distributed answer(s) to queries this host was not sent: "
        f"{shown}{more}"
    )
    log.warning("host %s: %s", host_id, message)
    log_store.add_server_status(session, host_id, now, STATUS_FILENAME, message, __version__)
