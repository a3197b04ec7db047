"""Hostile input against a real ``fleetctl serve``: each case states what must hold.

Every case talks to the server over HTTPS (or raw TLS sockets) as an attacker would, and
checks the outcome in the database directly or through the admin API: nothing written
that should not be, the host's stream still stored, the server still serving, every
answer JSON.
"""

from __future__ import annotations

import base64
import concurrent.futures
import gzip
import json
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import text

from storage.base import metadata
from storage.engine import make_engine
from tests.fault.report import Outcome
from tests.fault.server import ServeProcess

MiB = 1024 * 1024


class CaseFailed(AssertionError):
    """A case's expectation did not hold; the message says how."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CaseFailed(message)


@dataclass
class Target:
    """The server under attack, one enrolled victim host and helpers to read the store."""

    server: ServeProcess
    backend: str
    admin: httpx.Client
    http: httpx.Client
    node_key: str
    host_id: int

    def scalar(self, sql: str, **params: Any) -> Any:
        engine = make_engine(self.server.db_url)
        try:
            with engine.connect() as conn:
                return conn.execute(text(sql), params).scalar()
        finally:
            engine.dispose()

    def post(self, path: str, body: dict[str, Any] | bytes, **headers: str) -> httpx.Response:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        return self.http.post(
            f"/api/v1/osquery{path}",
            content=content,
            headers={"Content-Type": "application/json", **headers},
        )

    def log(self, lines: list[Any], log_type: str = "result") -> dict[str, Any]:
        answer: dict[str, Any] = self.post(
            "/log", {"node_key": self.node_key, "log_type": log_type, "data": lines}
        ).json()
        return answer

    def stored(self, marker: str) -> bool:
        """Whether a result row whose ``cmdline`` is ``marker`` reached the store."""
        count = self.scalar(
            "SELECT count(*) FROM result_rows WHERE host_id = :h AND removed_at IS NULL AND "
            + (
                "columns ->> 'cmdline' = :m"
                if self.backend == "postgresql"
                else "json_extract(columns, '$.cmdline') = :m"
            ),
            h=self.host_id,
            m=marker,
        )
        return bool(count)

    def sql(self, query: str, timeout: float = 30.0) -> httpx.Response:
        return self.admin.post("/api/v1/admin/sql", json={"sql": query}, timeout=timeout)


def enroll(server: ServeProcess, http: httpx.Client, identifier: str) -> str:
    answer = http.post(
        "/api/v1/osquery/enroll",
        json={
            "enroll_secret": server.secret,
            "host_identifier": identifier,
            "platform_type": "9",
            "host_details": {
                "system_info": {"uuid": f"uuid-{identifier}", "hostname": identifier},
                "os_version": {"name": "Debian", "version": "12", "platform": "debian"},
            },
        },
    ).json()
    return str(answer["node_key"])


_counter = iter(range(1, 10**9))


def line(cmdline: str, **over: Any) -> dict[str, Any]:
    """A well-formed event-format result line (a new counter each time)."""
    n = next(_counter)
    base = {
        "name": "pack_fault_probe",
        "hostIdentifier": "victim",
        "unixTime": 1_700_000_000 + n,
        "epoch": 0,
        "counter": n,
        "numerics": False,
        "columns": {"pid": str(n), "cmdline": cmdline},
        "action": "added",
    }
    base.update(over)
    return base


def is_json_error(response: httpx.Response, statuses: range = range(400, 600)) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return response.status_code in statuses and isinstance(body, dict) and "error" in body


# ------------------------------------------------------------------ analyst SQL


def _row_counts(t: Target) -> tuple[int, int, int]:
    return (
        int(t.scalar("SELECT count(*) FROM result_rows")),
        int(t.scalar("SELECT count(*) FROM hosts")),
        int(t.scalar("SELECT count(*) FROM api_tokens")),
    )


def sql_chained_statements(t: Target) -> str:
    before = _row_counts(t)
    attacks = [
        "SELECT 1; DELETE FROM result_rows",
        "SELECT E'\\''; COMMIT; BEGIN READ WRITE; DELETE FROM result_rows; COMMIT; --'",
        "SELECT $$;$$; DELETE FROM hosts; --",
        "WITH x AS (DELETE FROM result_rows RETURNING 1) SELECT * FROM x",
        "SELECT * FROM hunt_hosts; UPDATE hosts SET hostname = 'owned'",
    ]
    for attack in attacks:
        answer = t.sql(attack)
        expect(is_json_error(answer, range(400, 500)), f"{attack!r} answered {answer.status_code}")
    expect(_row_counts(t) == before, f"rows changed: {before} -> {_row_counts(t)}")
    return f"{len(attacks)} chained/CTE writes refused, store unchanged"


def sql_escape_to_server(t: Target) -> str:
    marker = Path(f"/tmp/fleetctl-fault-{uuid.uuid4().hex}")
    attacks = (
        [
            f"COPY (SELECT 1) TO PROGRAM 'touch {marker}'",
            f"SELECT E'\\''; COPY (SELECT 1) TO PROGRAM 'touch {marker}'; --'",
            "SELECT pg_read_file('/etc/passwd')",
            "SELECT pg_ls_dir('.')",
            "SELECT lo_import('/etc/hostname')",
            "SELECT lo_from_bytea(0, 'x'::bytea)",
            "SELECT query_to_xml('DELETE FROM result_rows', true, true, '')",
            "SELECT set_config('role', 'postgres', false)",
            "SELECT * FROM api_tokens",
            "SELECT * FROM store_secrets",
        ]
        if t.backend == "postgresql"
        else [
            f"ATTACH DATABASE '{marker}' AS x",
            "SELECT load_extension('/lib/x86_64-linux-gnu/libc.so.6')",
            "SELECT * FROM api_tokens",
            "SELECT * FROM sqlite_master",
            "PRAGMA writable_schema = ON",
            "SELECT * FROM pragma_database_list",
        ]
    )
    objects = _large_objects(t)
    for attack in attacks:
        answer = t.sql(attack)
        expect(
            is_json_error(answer, range(400, 500)),
            f"{attack!r} answered {answer.status_code} {answer.text[:200]}",
        )
    expect(not marker.exists(), f"{marker} was created")
    expect(_large_objects(t) == objects, "a large object was created")
    return f"{len(attacks)} file, program, catalog and secret reads refused (JSON 4xx)"


def _large_objects(t: Target) -> int:
    if t.backend != "postgresql":
        return 0
    return int(t.scalar("SELECT count(*) FROM pg_largeobject_metadata"))


def sql_locks_and_signals(t: Target) -> str:
    """A lock on the victim's advisory key or a signal to the server's sessions must not
    stop the victim's ingest."""
    if t.backend == "postgresql":
        for attack in (
            f"SELECT pg_advisory_lock({t.host_id})",
            f"SELECT pg_advisory_lock(0, {t.host_id})",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity",
        ):
            answer = t.sql(attack)
            expect(
                answer.status_code < 500
                and answer.headers["content-type"].startswith("application/json"),
                f"{attack!r} answered {answer.status_code}",
            )
    started = time.monotonic()
    marker = f"after-lock-{uuid.uuid4().hex}"
    answer = t.log([line(marker)])
    took = time.monotonic() - started
    expect("error" not in answer, f"/log failed after the attack: {answer}")
    expect(t.stored(marker), "the victim's line was not stored")
    expect(took < 5, f"the victim's /log took {took:.1f} s")
    return f"victim's /log stored in {took:.2f} s after lock/terminate attempts"


def sql_slow_queries_do_not_stall_ingest(t: Target) -> str:
    slow = (
        "SELECT pg_sleep(8)"
        if t.backend == "postgresql"
        else "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
    )
    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        futures = [pool.submit(t.sql, slow, 60.0) for _ in range(40)]
        time.sleep(1.0)
        marker = f"during-slow-sql-{uuid.uuid4().hex}"
        started = time.monotonic()
        answer = t.log([line(marker)])
        took = time.monotonic() - started
        statuses = sorted({f.result().status_code for f in futures})
        bodies_json = all(
            f.result().headers["content-type"].startswith("application/json") for f in futures
        )
    expect("error" not in answer and t.stored(marker), f"/log during slow SQL: {answer}")
    expect(took < 2.0, f"/log took {took:.1f} s while 40 slow analyst queries ran")
    expect(bodies_json, "an analyst answer was not JSON")
    return f"/log answered in {took:.2f} s beside 40 slow queries (their statuses {statuses})"


def sql_huge_values(t: Target) -> str:
    """A 300-400 MB value is refused before it reaches the server; a 200 MB result is
    cut at the answer cap; the server's peak memory stays far below either."""
    before = t.server.rss_peak_kib()
    huge = (
        "SELECT repeat('x', 300000000) AS big"
        if t.backend == "postgresql"
        else "SELECT randomblob(400000000) AS big"
    )
    answer = t.sql(huge, timeout=60)
    expect(is_json_error(answer, range(400, 500)), f"a huge value answered {answer.status_code}")
    many = t.sql(
        "SELECT repeat('y', 100000) AS v FROM generate_series(1, 2000)"
        if t.backend == "postgresql"
        else "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000)"
        " SELECT printf('%.*c', 100000, 'y') AS v FROM c",
        timeout=60,
    )
    expect(many.status_code == 200, f"2,000 rows of 100 kB answered {many.status_code}")
    cut = many.json()
    expect(cut["truncated"] and len(cut["rows"]) < 2000, "a 200 MB answer was not cut")
    grew = (t.server.rss_peak_kib() - before) // 1024
    expect(grew < 150, f"server peak memory grew by {grew} MiB")
    return (
        f"huge value refused; 200 MB answer cut at {len(cut['rows'])} rows"
        f" ({cut.get('reason', '')[:50]}); server peak memory +{grew} MiB"
    )


def sql_blob_columns(t: Target) -> str:
    query = (
        "SELECT '\\xdeadbeef'::bytea AS b, 1.5::numeric AS n, now() AS t, interval '1 day' AS i,"
        " ARRAY[1,2] AS a"
        if t.backend == "postgresql"
        else "SELECT x'deadbeef' AS b, 1.5 AS n"
    )
    answer = t.sql(query)
    expect(answer.status_code == 200, f"answered {answer.status_code} {answer.text[:200]}")
    row = answer.json()["rows"][0]
    expect("deadbeef" in str(row["b"]).lower(), f"bytea came back as {row['b']!r}")
    return f"binary and typed columns as JSON: {json.dumps(row)[:100]}"


# ------------------------------------------------------------------ poison lines


def _deep(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


POISON: dict[str, Callable[[], dict[str, Any] | bytes]] = {
    "NUL in a value": lambda: line("nul\x00value"),
    "NUL in a column name": lambda: line("x", columns={"pid": "1", "cmd\x00line": "x"}),
    "NUL in the query name": lambda: line("x", name="pack_fault\x00probe"),
    "NUL in a decoration": lambda: line("x", decorations={"user\x00name": "r\x00oot"}),
    "100,000-character query name": lambda: line("x", name="q" * 100_000),
    "counter 2^64": lambda: line("x", counter=2**64),
    "unixTime 2^63": lambda: line("x", unixTime=2**63),
    "negative epoch": lambda: line("x", epoch=-(2**63) - 1),
    "500-deep column value": lambda: line("x", columns={"pid": "1", "cmdline": _deep(500)}),
    "object column value": lambda: line("x", columns={"pid": {"a": 1}, "cmdline": "x"}),
    "list as a line": lambda: {"not": "a result line"},
    "action missing": lambda: {k: v for k, v in line("x").items() if k != "action"},
    "100 kB column name": lambda: line("x", columns={"c" * 100_000: "1", "cmdline": "x"}),
}


def _raw_batch(t: Target, good: list[dict[str, Any]], bad_json: bytes) -> bytes:
    """A body with ``bad_json`` spliced in as one line between the good lines."""
    head = orjson.dumps({"node_key": t.node_key, "log_type": "result", "data": good[:1]})
    tail = orjson.dumps(good[1:])[1:-1]
    return head[:-2] + b"," + bad_json + b"," + tail + b"]}"


def poison_lines(t: Target) -> str:
    """Each odd line between two good ones: the good ones and the host's next batch are
    stored, the odd one is stored faithfully or kept in ``rejected_lines``."""
    # The standard library encodes what orjson refuses (integers past 64 bits, depth).
    cases = {name: json.dumps(make()).encode() for name, make in POISON.items()}
    cases["lone surrogate in a value"] = (
        orjson.dumps(line("x"))[:-1].replace(b'"cmdline":"x"', b'"cmdline":"bad\\ud800"') + b"}"
    )
    cases["invalid UTF-8 in a value"] = orjson.dumps(line("x")).replace(
        b'"cmdline":"x"', b'"cmdline":"bad\xff\xfe"'
    )
    failures = []
    for name, bad in cases.items():
        rejected_before = int(
            t.scalar("SELECT count(*) FROM rejected_lines WHERE host_id = :h", h=t.host_id)
        )
        tag = uuid.uuid4().hex[:8]
        good = [line(f"before-{tag}"), line(f"after-{tag}")]
        response = t.post("/log", _raw_batch(t, good, bad))
        answer = (
            response.json()
            if response.headers["content-type"].startswith("application/json")
            else {"error": response.text[:80]}
        )
        follow = line(f"next-{tag}")
        next_answer = t.log([follow])
        rejected = (
            int(t.scalar("SELECT count(*) FROM rejected_lines WHERE host_id = :h", h=t.host_id))
            - rejected_before
        )
        problems = []
        if "error" in answer:
            problems.append(f"batch refused ({answer['error'][:60]})")
        if not (t.stored(f"before-{tag}") and t.stored(f"after-{tag}")):
            problems.append("good lines not stored")
        if "error" in next_answer or not t.stored(f"next-{tag}"):
            problems.append("next batch not stored")
        if rejected > 1:
            problems.append(f"{rejected} lines quarantined for one")
        if problems:
            failures.append(f"{name}: {', '.join(problems)}")
    expect(not failures, f"{len(failures)} of {len(cases)} kinds failed: " + "; ".join(failures))
    return f"{len(cases)} kinds of odd line: each stored or quarantined, the stream flowed on"


def foreign_host_line(t: Target) -> str:
    other = enroll(t.server, t.http, "bystander")
    tag = uuid.uuid4().hex[:8]
    answer = t.log([line(f"own-{tag}"), line(f"forged-{tag}", hostIdentifier="bystander")])
    expect("error" not in answer, f"batch refused: {answer}")
    expect(t.stored(f"own-{tag}"), "the host's own line was not stored")
    forged = t.scalar(
        "SELECT count(*) FROM result_rows r JOIN hosts h ON h.id = r.host_id"
        " WHERE h.host_identifier = 'bystander'"
    )
    expect(forged == 0, "a line was stored for another host")
    del other
    return "a line naming another enrolled host is not stored; the rest is"


# ------------------------------------------------------------------ distributed answers


def label_answers(t: Target) -> str:
    enroll(t.server, t.http, "bystander-2")
    applied = t.admin.post(
        "/api/v1/admin/labels", json={"name": "canaries", "hosts": ["bystander-2"]}
    )
    expect(applied.status_code == 200, f"label apply: {applied.status_code} {applied.text}")
    label_id = int(t.scalar("SELECT id FROM labels WHERE name = 'canaries'"))
    members = "SELECT count(*) FROM label_membership WHERE label_id = :l AND member"
    before = int(t.scalar(members, l=label_id))
    t.post(
        "/distributed/write",
        {
            "node_key": t.node_key,
            "queries": {f"fleetctl_label_{label_id}": [{"1": "1"}]},
            "statuses": {f"fleetctl_label_{label_id}": 0},
        },
    )
    after = int(t.scalar(members, l=label_id))
    expect(after == before, f"a host changed a manual label's members ({before} -> {after})")
    return "an answer to a manual label's id changes nothing"


def unsolicited_answers(t: Target) -> str:
    ids = [f"q{uuid.uuid4().hex}" for _ in range(1000)] + [
        f"fleetctl_campaign_{n}" for n in range(1, 1001)
    ]
    before = _table_counts(t)
    response = t.post(
        "/distributed/write",
        {
            "node_key": t.node_key,
            "queries": {i: [{"x": "1"}] for i in ids},
            "statuses": dict.fromkeys(ids, 0),
        },
    )
    expect(response.status_code < 500, f"answered {response.status_code}")
    after = _table_counts(t)
    grew = {table: after[table] - n for table, n in before.items() if after[table] != n}
    expect(grew == {"status_logs": 1}, f"answers to ids never sent changed the store: {grew}")
    return f"{len(ids)} answers to ids never sent: nothing stored but one status log entry"


def _table_counts(t: Target) -> dict[str, int]:
    """Rows in every table of the store."""
    return {
        table.name: int(t.scalar(f'SELECT count(*) FROM "{table.name}"'))
        for table in metadata.sorted_tables
    }


# ------------------------------------------------------------------ carves


def carve_limits(t: Target) -> str:
    huge = t.post(
        "/carve/begin",
        {
            "node_key": t.node_key,
            "block_count": 1_000_000,
            "block_size": 4 * MiB,
            "carve_size": 10,
            "carve_id": "c",
            "request_id": "r",
        },
    )
    expect("session_id" not in huge.json(), "1,000,000 blocks of 4 MiB accepted for 10 bytes")
    begun = t.post(
        "/carve/begin",
        {
            "node_key": t.node_key,
            "block_count": 2,
            "block_size": 8,
            "carve_size": 10,
            "carve_id": "c2",
            "request_id": "r2",
        },
    ).json()
    session_id = begun.get("session_id")
    expect(bool(session_id), f"a sane carve was refused: {begun}")
    blob = base64.b64encode(b"\x00" * 8).decode()
    for block_id in (0, 1):
        t.post(
            "/carve/block",
            {"session_id": session_id, "block_id": block_id, "data": blob, "request_id": "r2"},
        )
    stored = t.scalar(
        "SELECT coalesce(length(archive), 0) + coalesce((SELECT sum(length(data)) FROM"
        " carve_blocks b WHERE b.carve_id = c.id), 0) FROM carves c WHERE session_id = :s",
        s=session_id,
    )
    expect(int(stored or 0) <= 10, f"{stored} bytes stored for a 10-byte carve")
    return f"oversized carve refused; {stored} bytes kept of a declared 10"


# ------------------------------------------------------------------ admin API and bodies


def admin_out_of_range(t: Target) -> str:
    paths = [
        "/api/v1/admin/results?host=1&query=q&at=99999999999999999999",
        "/api/v1/admin/queries/123456789012345678901",
        "/api/v1/admin/status-logs?host=1&limit=-1",
        "/api/v1/admin/status-logs?host=1&limit=99999999999999999999",
        "/api/v1/admin/hosts/%00",
        "/api/v1/admin/hunts/x%00/results?offset=-5",
        "/api/v1/admin/no-such-route",
        "/api/v1/osquery/no-such-route",
    ]
    bad = [p for p in paths if not is_json_error(t.admin.get(p), range(400, 500))]
    wrong_method = t.admin.delete("/api/v1/admin/hosts")
    expect(not bad, f"not a JSON 4xx: {bad}")
    expect(is_json_error(wrong_method, range(400, 500)), "a wrong method was not a JSON 4xx")
    return f"{len(paths) + 1} out-of-range, NUL, unknown and wrong-method requests: JSON 4xx"


def hostile_bodies(t: Target) -> str:
    bomb = gzip.compress(b"[" + b"0," * (40 * MiB) + b"0]")
    cases = {
        "gzip bomb": (bomb, {"Content-Encoding": "gzip"}),
        "oversize body": (b"{" + b" " * (17 * MiB) + b"}", {}),
        "malformed JSON": (b'{"node_key": "x", "data": [', {}),
        "unknown node key": (b'{"node_key": "nope", "log_type": "result", "data": []}', {}),
        "wrong types": (orjson.dumps({"node_key": t.node_key, "log_type": 5, "data": "x"}), {}),
    }
    bad = []
    for name, (body, headers) in cases.items():
        response = t.post("/log", body, **headers)
        if not is_json_error(response, range(400, 500)):
            bad.append(f"{name}: {response.status_code}")
    expect(not bad, "; ".join(bad))
    marker = f"after-bodies-{uuid.uuid4().hex}"
    expect("error" not in t.log([line(marker)]) and t.stored(marker), "stream stopped")
    return f"{len(cases)} hostile bodies answered JSON 4xx; the host's next batch stored"


# ------------------------------------------------------------------ the listener


def _tls_socket(t: Target, source: str = "127.0.0.1") -> ssl.SSLSocket:
    raw = socket.create_connection(
        ("127.0.0.1", t.server.port), timeout=5, source_address=(source, 0)
    )
    return t.server.ssl.wrap_socket(raw, server_hostname="127.0.0.1")


def _closed_within(sock: ssl.SSLSocket, seconds: float, trickle: bytes = b"") -> float | None:
    """Seconds until the server closes ``sock`` while we send ``trickle`` a byte a second."""
    started = time.monotonic()
    sock.settimeout(1.0)
    sent = 0
    while time.monotonic() - started < seconds:
        try:
            if sent < len(trickle):
                sock.send(trickle[sent : sent + 1])
                sent += 1
            data = sock.recv(65536)
            if not data:
                return time.monotonic() - started
        except TimeoutError:
            continue
        except (ssl.SSLError, OSError):
            return time.monotonic() - started
    return None


def slow_clients(t: Target) -> str:
    headers = b"POST /api/v1/osquery/log HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 200
    slowloris = _closed_within(_tls_socket(t, "127.0.0.2"), 20, headers)
    expect(slowloris is not None, "a client sending headers a byte a second stayed open 20 s")
    stalled = _tls_socket(t, "127.0.0.2")
    stalled.sendall(
        b"POST /api/v1/osquery/log HTTP/1.1\r\nHost: x\r\nContent-Type: "
        b'application/json\r\nContent-Length: 1000\r\n\r\n{"node_key"'
    )
    body_stall = _closed_within(stalled, 20)
    expect(body_stall is not None, "a body that stopped arriving held the connection 20 s")
    return f"slow headers cut after {slowloris:.0f} s, a stalled body after {body_stall:.0f} s"


def connection_flood(t: Target) -> str:
    held = []
    refused = 0
    for _ in range(1000):
        try:
            held.append(_tls_socket(t, "127.0.0.3"))
        except (OSError, ssl.SSLError):
            refused += 1
    marker = f"during-flood-{uuid.uuid4().hex}"
    answer = t.log([line(marker)])
    still_open = 0
    for sock in held:
        sock.settimeout(0.05)
        try:
            if sock.recv(1) != b"":
                still_open += 1
        except TimeoutError:
            still_open += 1
        except (OSError, ssl.SSLError):
            pass
        sock.close()
    expect("error" not in answer and t.stored(marker), "a host was not served during the flood")
    expect(still_open < 1000, "1,000 idle connections from one address were all kept")
    return (
        f"1,000 idle TLS connections from one address: {still_open} kept open,"
        f" {1000 - still_open} closed or refused; a host was served meanwhile"
    )


CASES: tuple[tuple[str, Callable[[Target], str]], ...] = (
    ("sql: chained statements", sql_chained_statements),
    ("sql: escape to files, programs, secrets", sql_escape_to_server),
    ("sql: locks and signals", sql_locks_and_signals),
    ("sql: 40 slow queries vs ingest", sql_slow_queries_do_not_stall_ingest),
    ("sql: huge values and results", sql_huge_values),
    ("sql: binary and typed columns", sql_blob_columns),
    ("log: poison lines", poison_lines),
    ("log: lines for another host", foreign_host_line),
    ("distributed: manual label answers", label_answers),
    ("distributed: answers never asked", unsolicited_answers),
    ("carve: declared size", carve_limits),
    ("admin: out-of-range and unknown", admin_out_of_range),
    ("http: hostile bodies", hostile_bodies),
    ("http: slow clients", slow_clients),
    ("http: connection flood", connection_flood),
)

# Small listener limits so the slow-client cases finish in seconds.
LISTENER_OPTIONS = (
    "--header-timeout",
    "3",
    "--body-timeout",
    "3",
    "--max-connections-per-address",
    "64",
)


@contextmanager
def _target(server: ServeProcess, backend: str, key: str, host_id: int) -> Iterator[Target]:
    """Fresh clients per case, so one case's broken connection cannot fail the next."""
    with (
        server.admin(timeout=90) as admin,
        httpx.Client(base_url=server.url, verify=server.ssl, timeout=90) as http,
    ):
        yield Target(server, backend, admin, http, key, host_id)


def run_all(backend: str, make_db: Callable[[], str], only: str = "") -> list[Outcome]:
    """Every case whose name contains ``only``, against one server on a new store."""
    selected = [(name, case) for name, case in CASES if only in name]
    if not selected:
        return []
    outcomes = []
    server = ServeProcess(make_db(), *LISTENER_OPTIONS)
    try:
        with httpx.Client(base_url=server.url, verify=server.ssl, timeout=30) as http:
            key = enroll(server, http, "victim")
        with _target(server, backend, key, 0) as t:
            host_id = int(t.scalar("SELECT id FROM hosts WHERE host_identifier = 'victim'"))
        for name, case in selected:
            with _target(server, backend, key, host_id) as t:
                try:
                    outcomes.append(Outcome(name, backend, True, case(t)))
                except CaseFailed as exc:
                    outcomes.append(Outcome(name, backend, False, str(exc)))
                except Exception as exc:  # a crash of the case is a failure, with its reason
                    outcomes.append(Outcome(name, backend, False, f"{type(exc).__name__}: {exc}"))
            if server.proc is not None and server.proc.poll() is not None:
                outcomes.append(Outcome(name, backend, False, "the server process died"))
                break
    finally:
        server.stop()
    return outcomes
