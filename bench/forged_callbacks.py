"""Benchmark: what forged callbacks add to the database (rows and bytes), as an audit sent them.

Run from the repository root:

    .venv/bin/python -m bench.forged_callbacks [--calls 3000] [--big 400] [--addresses 1]

The relay's web app (in process, Starlette's TestClient, SQLite file) receives `--calls` forged
callbacks (tokens of the right shape, signed with a key we do not hold), then `--big` more each
with a 50 KB query string, spread over `--addresses` client addresses. Prints the answers by
status, the callbacks rows added and the database's growth in bytes (after VACUUM).
"""

from __future__ import annotations

import argparse
import collections
import sqlite3
import tempfile
from pathlib import Path

from sqlalchemy import func, select
from starlette.testclient import TestClient

from tests.fakes import RecordingEnqueuer
from webhooks.app import create_app
from worker.runtime import Runtime
from worker.settings import Settings
from worker.storage.tables import callbacks
from worker.tokens import CallbackKey, sign_callback_token

KEY = CallbackKey("k1", b"k" * 32)
FORGED = (CallbackKey("k1", b"x" * 32),)


def size_after_vacuum(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.execute("VACUUM")
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--big", type=int, default=400)
    parser.add_argument("--addresses", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "relay.db"
        settings = Settings(database_url=f"sqlite:///{database}", callback_keys=(KEY,), var_dir=tmp)
        runtime = Runtime.from_settings(settings, RecordingEnqueuer())
        runtime.store.migrate()
        before = size_after_vacuum(database)
        statuses: collections.Counter[int] = collections.Counter()
        app = create_app(settings, runtime=runtime, broker_ping=lambda: None)
        clients = [
            TestClient(app, client=(f"203.0.113.{n + 1}", 50000)) for n in range(args.addresses)
        ]
        for n in range(args.calls + args.big):
            token = sign_callback_token(FORGED, f"inv_{n}")
            params = {"q": "x" * 50_000} if n >= args.calls else None
            response = clients[n % len(clients)].get(f"/callbacks/isograd/{token}", params=params)
            statuses[response.status_code] += 1
        with runtime.store.engine.connect() as connection:
            rows = connection.execute(select(func.count()).select_from(callbacks)).scalar_one()
        runtime.close()
        after = size_after_vacuum(database)
    print(f"answers {dict(sorted(statuses.items()))}")
    print(f"callbacks rows added {rows}, database grew {after - before:,} bytes")


if __name__ == "__main__":
    main()
