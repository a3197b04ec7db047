"""Answers to DET0493's triage questions for one occurrence of a finding, from stored facts.

The seed asks SOC playbooks to answer, for a suspicious execution: which process
initiated it and under what user and session; whether IPC activity preceded it; whether
the parent normally starts such children; what the child did next; and whether the logs
can be trusted over that time. Each ``Answer`` says ``answered``, ``partial`` or
``unknown``, in words, with the evidence rows it used; an answer the store cannot give
says why, because "no" and "not collected" must never look alike.

Pure judging: the facts come in a ``Facts`` (read by ``storage.triage`` and the
detection snapshot of the host at the occurrence's time); nothing here reads a database.
``initiator_chain`` is used both to decide what to read and to judge it.
"""

from __future__ import annotations

from fleetctl.detection.triage.aftermath import (
    children_in_window,
    next_steps,
    of_processes,
    parent_app,
    prevalence,
    telemetry,
)
from fleetctl.detection.triage.chain import DEFAULT_LIMIT, MAX_DEPTH, Chain, Hop, initiator_chain
from fleetctl.detection.triage.facts import (
    ANSWERED,
    CHANNEL_ROWS,
    DEFAULT_WINDOW,
    GAP_GRACE,
    MAX_LIMIT,
    MAX_WINDOW,
    PARTIAL,
    PROCESS_ROWS,
    QUESTIONS,
    UNKNOWN,
    Answer,
    Facts,
    Rows,
    Subject,
    Triage,
)
from fleetctl.detection.triage.origin import initiator, preceded, user_and_session


def judge(facts: Facts) -> Triage:
    """Every triage question answered from ``facts``."""
    answers = (
        initiator(facts),
        user_and_session(facts),
        preceded(facts),
        prevalence(facts),
        next_steps(facts),
        telemetry(facts),
    )
    s = facts.subject
    return Triage(s.host, s.pid, s.start_time, s.at, facts.window, answers)


__all__ = [
    "ANSWERED",
    "CHANNEL_ROWS",
    "DEFAULT_LIMIT",
    "DEFAULT_WINDOW",
    "GAP_GRACE",
    "MAX_DEPTH",
    "MAX_LIMIT",
    "MAX_WINDOW",
    "PARTIAL",
    "PROCESS_ROWS",
    "QUESTIONS",
    "UNKNOWN",
    "Answer",
    "Chain",
    "Facts",
    "Hop",
    "Rows",
    "Subject",
    "Triage",
    "children_in_window",
    "initiator_chain",
    "judge",
    "of_processes",
    "parent_app",
]
