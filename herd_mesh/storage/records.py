"""Every request, succeeded or failed, recorded in SQLite (WAL) in `<data-dir>/herd.db`."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .writer import Writer

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    width INTEGER, height INTEGER, steps INTEGER,
    node TEXT,
    entry_node TEXT,
    queue_ms INTEGER,
    generation_ms INTEGER,
    status TEXT NOT NULL,
    error TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    prompt TEXT,
    job_id TEXT
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
CREATE INDEX IF NOT EXISTS requests_kind_ts ON requests (kind, ts);
"""


@dataclass
class RequestRecord:
    kind: str  # image | llm | embeddings | transcription
    model: str
    status: str  # ok | failed | cancelled
    node: str | None = None  # where it ran
    entry_node: str | None = None  # where the client sent it
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    queue_ms: int | None = None
    generation_ms: int | None = None
    error: str | None = None
    tags: tuple[str, ...] = ()
    prompt: str | None = None
    job_id: str | None = None
    ts: float = field(default_factory=time.time)


class Records:
    """One SQLite file; a lock makes the one connection safe from worker threads. Inserts go through the
    `Writer` thread, so recording a request never blocks the event loop; reads see every earlier insert."""

    def __init__(self, path: Path, writer: Writer) -> None:
        self._writer = writer
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._writer.flush()
        with self._lock:
            self._db.close()

    def add(self, record: RequestRecord) -> None:
        """Queue the insert; it runs on the writer thread."""
        row = asdict(record)
        row["tags"] = json.dumps(list(record.tags))
        self._writer.submit(lambda: self._insert(row))

    def _insert(self, row: dict[str, Any]) -> None:
        columns = ", ".join(row)
        with self._lock:
            self._db.execute(
                f"INSERT INTO requests ({columns}) VALUES ({', '.join('?' for _ in row)})", tuple(row.values())
            )

    def prune(self, older_than: float) -> int:
        self._writer.flush()
        with self._lock:
            return self._db.execute("DELETE FROM requests WHERE ts < ?", (older_than,)).rowcount

    def rows(self, *, since: float, kind: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Rows since `since`, oldest first; with `limit`, only the newest `limit` of them."""
        self._writer.flush()
        query = "SELECT * FROM requests WHERE ts >= ?" + (" AND kind = ?" if kind else "")
        params: tuple[Any, ...] = (since, kind) if kind else (since,)
        if limit is not None:
            query += " ORDER BY ts DESC, id DESC LIMIT ?"
            params += (limit,)
        else:
            query += " ORDER BY ts"
        with self._lock:
            cursor = self._db.execute(query, params)
            names = [c[0] for c in cursor.description]
            out = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
        if limit is not None:
            out.reverse()
        for row in out:
            row["tags"] = json.loads(row["tags"] or "[]")
        return out


SHARED_COLUMNS = (
    "ts", "kind", "model", "width", "height", "steps", "node", "entry_node",
    "queue_ms", "generation_ms", "status", "error", "tags", "prompt", "job_id",
)  # fmt: skip  # what a peer hands another for mesh-wide statistics: every column but the local row id


def shared_rows(
    records: Records, *, since: float, kind: str | None = None, limit: int, prompts: bool = False
) -> dict[str, Any]:
    """This peer's own rows for another peer to merge: the newest `limit`, oldest first, and whether cut.
    Prompts stay on this Mac unless `prompts` (a mesh key authenticates the peers that ask)."""
    rows = records.rows(since=since, kind=kind, limit=limit + 1)
    truncated = len(rows) > limit
    kept = rows[1:] if truncated else rows
    columns = SHARED_COLUMNS if prompts else tuple(c for c in SHARED_COLUMNS if c != "prompt")
    return {"rows": [{k: row.get(k) for k in columns} for row in kept], "truncated": truncated}
