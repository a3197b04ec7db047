"""What users, roles and tokens cost an admin call, through ``fleetctl serve`` in its
own process (SQLite, or PostgreSQL with ``--backend postgresql``):

1. sign-in (``POST /login``: an argon2id check, then a token written), sequential;
2. an admin read (``GET /hosts`` on an empty store) with a token the server has cached,
   beside ``/healthz`` (no token, no store) as the floor of a request in the same run;
3. the first call with a token made since the server last read its tokens (looked up
   in the store on its own), beside its second call (cached).

Targets: sign-in p95 under 0.5 s; a token's first call within 2x a cached call.

    .venv/bin/python bench/bench_access.py [--backend postgresql] [--n 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_server import Server, make_db, release_db  # noqa: E402

ADMIN = "/api/v1/admin"


def timed(call: Callable[[], httpx.Response], n: int) -> list[float]:
    """Seconds each of ``n`` calls took (each must succeed)."""
    took = []
    for _ in range(n):
        start = time.perf_counter()
        answer = call()
        took.append(time.perf_counter() - start)
        assert answer.status_code == 200, answer.text
    return took


def shown(what: str, took: list[float]) -> str:
    ordered = sorted(took)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return f"{what:<34} p50 {statistics.median(took) * 1000:7.2f} ms  p95 {p95 * 1000:7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--n", type=int, default=200, help="calls per measurement")
    args = parser.parse_args()
    db = make_db(args.backend)
    server = Server(db, ("--workers", "1"))
    try:
        password = (server.home / "admin_password").read_text().strip()
        with httpx.Client(base_url=server.url, verify=server.ssl, timeout=30) as http:
            login = {"user": "admin", "password": password, "name": "bench"}
            sign_ins = timed(lambda: http.post(f"{ADMIN}/login", json=login), max(10, args.n // 10))
            auth = {"Authorization": f"Bearer {server.token}"}
            floor = timed(lambda: http.get("/healthz"), args.n)
            cached = timed(lambda: http.get(f"{ADMIN}/hosts", headers=auth), args.n)
            tokens = []
            for i in range(args.n // 4):
                made = http.post(f"{ADMIN}/tokens", json={"name": f"t{i}"}, headers=auth)
                tokens.append(made.json()["token"])
            firsts, seconds = [], []
            for token in tokens:
                mine = {"Authorization": f"Bearer {token}"}
                firsts += timed(lambda: http.get(f"{ADMIN}/hosts", headers=mine), 1)  # noqa: B023
                seconds += timed(lambda: http.get(f"{ADMIN}/hosts", headers=mine), 1)  # noqa: B023
        print(f"backend {args.backend}, one worker")
        print(shown("sign-in", sign_ins))
        print(shown("/healthz (floor)", floor))
        print(shown("GET /hosts, cached token", cached))
        print(shown("GET /hosts, token's first call", firsts))
        print(shown("GET /hosts, token's second call", seconds))
    finally:
        server.stop()
        release_db(args.backend, db)


if __name__ == "__main__":
    main()
