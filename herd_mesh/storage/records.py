"""Every request, succeeded, failed or rejected, recorded in SQLite (WAL) in `<data-dir>/herd.db`.

A row is written by the peer the client called (its entry peer) and copied to every other peer
(`mesh/records_sync.py`), so the mesh's history survives any one Mac being off. A row is identified by
(entry node, job id, time): a copy that arrives twice is stored once (`merge`). The local row id doubles as a
change sequence: another peer asks for the rows added here after the last id it saw (`changes`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .writer import Writer

logger = logging.getLogger(__name__)

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
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sync_cursors (node_id TEXT PRIMARY KEY, db TEXT NOT NULL, seq INTEGER NOT NULL);
"""
ADDED_COLUMNS = {  # columns newer than the first schema: added in place to an older file
    "reason": "TEXT",  # why it ran where it ran (the router's own words)
    "attempts": "TEXT",  # JSON: [{"node", "reason", "status"?}] for every peer that failed it
    "source": "TEXT",  # NULL: written here; else the peer this copy came from (never sent back to it)
}
IDENTITY_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS requests_identity ON requests (entry_node, job_id, ts)"
ROW_COLUMNS = (
    "ts", "kind", "model", "width", "height", "steps", "node", "entry_node", "queue_ms", "generation_ms",
    "status", "error", "tags", "prompt", "job_id", "reason", "attempts",
)  # fmt: skip  # what a row is, wherever it is kept


@dataclass
class RequestRecord:
    kind: str  # image | llm | embeddings | transcription
    model: str
    status: str  # ok | failed | cancelled | rejected (refused before routing: unknown model, bad input)
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
    reason: str | None = None
    attempts: tuple[dict[str, str], ...] = ()
    ts: float = field(default_factory=time.time)

    def row(self) -> dict[str, Any]:
        """The record as a row another peer can store (tags and attempts as lists)."""
        out = asdict(self)
        out["tags"] = list(self.tags)
        out["attempts"] = [dict(a) for a in self.attempts]
        return out


class Records:
    """One SQLite file; a lock makes the one connection safe from worker threads. Inserts go through the
    `Writer` thread, so recording a request never blocks the event loop; reads see every earlier insert."""

    def __init__(self, path: Path, writer: Writer, on_added: Callable[[], None] | None = None) -> None:
        self._writer = writer
        self.on_added = on_added  # called (on the writer thread or the caller's) after rows were stored
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._migrate()
        self._lock = threading.Lock()
        self.db_id = self._db_id()
        self.seq = int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM requests").fetchone()[0])

    def _migrate(self) -> None:
        have = {r[1] for r in self._db.execute("PRAGMA table_info(requests)")}
        for name, kind in ADDED_COLUMNS.items():
            if name not in have:
                self._db.execute(f"ALTER TABLE requests ADD COLUMN {name} {kind}")
        try:
            self._db.execute(IDENTITY_INDEX)
        except sqlite3.IntegrityError:  # copies stored twice by an older version: keep the first
            self._db.execute("DELETE FROM requests WHERE job_id IS NOT NULL AND id NOT IN "
                             "(SELECT MIN(id) FROM requests GROUP BY entry_node, job_id, ts)")  # fmt: skip
            self._db.execute(IDENTITY_INDEX)

    def _db_id(self) -> str:
        """This file's identity: a peer whose file was replaced starts its changes from zero again."""
        found = self._db.execute("SELECT value FROM meta WHERE key = 'db_id'").fetchone()
        if found:
            return str(found[0])
        value = uuid.uuid4().hex[:16]
        self._db.execute("INSERT INTO meta (key, value) VALUES ('db_id', ?)", (value,))
        return value

    def close(self) -> None:
        self._writer.flush()
        with self._lock:
            self._db.close()

    def flush(self) -> None:
        self._writer.flush()

    # -- writing --------------------------------------------------------------------------------------------------
    def add(self, record: RequestRecord) -> None:
        """Queue the insert; it runs on the writer thread."""
        row = _encoded(record.row())
        self._writer.submit(lambda: self._insert([row], source=None))

    def merge(self, rows: Iterable[Mapping[str, Any]], *, source: str) -> int:
        """Store copies another peer sent (already checked); a row stored before is skipped. Returns how many
        were new."""
        encoded = [_encoded(r) for r in rows]
        return self._insert(encoded, source=source) if encoded else 0

    def _insert(self, rows: list[dict[str, Any]], *, source: str | None) -> int:
        columns = (*ROW_COLUMNS, "source")
        sql = f"INSERT OR IGNORE INTO requests ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
        added = 0
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for row in rows:
                    cursor = self._db.execute(sql, (*(row.get(c) for c in ROW_COLUMNS), source))
                    if cursor.rowcount > 0:
                        added += 1
                        self.seq = max(self.seq, int(cursor.lastrowid or 0))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if added and self.on_added is not None:
            self.on_added()
        return added

    def prune(self, older_than: float) -> int:
        self._writer.flush()
        with self._lock:
            return self._db.execute("DELETE FROM requests WHERE ts < ?", (older_than,)).rowcount

    # -- reading --------------------------------------------------------------------------------------------------
    def rows(
        self, *, since: float, kind: str | None = None, limit: int | None = None, entry_node: str | None = None
    ) -> list[dict[str, Any]]:
        """Rows since `since`, oldest first; with `limit`, only the newest `limit` of them."""
        self._writer.flush()
        query = "SELECT * FROM requests WHERE ts >= ?"
        params: tuple[Any, ...] = (since,)
        if kind:
            query += " AND kind = ?"
            params += (kind,)
        if entry_node:
            query += " AND entry_node = ?"
            params += (entry_node,)
        if limit is not None:
            query += " ORDER BY ts DESC, id DESC LIMIT ?"
            params += (limit,)
        else:
            query += " ORDER BY ts"
        out = self._select(query, params)
        if limit is not None:
            out.reverse()
        return out

    def find(self, job_id: str) -> list[dict[str, Any]]:
        """Every row of one job id, newest first (a client may reuse an X-Request-Id)."""
        self._writer.flush()
        return self._select("SELECT * FROM requests WHERE job_id = ? ORDER BY ts DESC LIMIT 20", (job_id,))

    def changes(
        self, *, after: int, limit: int, skip_source: str | None = None, own_only: bool = False
    ) -> tuple[list[dict[str, Any]], int]:
        """Rows stored here after local id `after`, oldest first, and the id to ask after next time. Rows that
        came from `skip_source` are not sent back to it (`own_only`: only rows written here), and rows without
        an identity never travel."""
        self._writer.flush()
        source = "source IS NULL" if own_only else "(source IS NULL OR source != ?)"
        query = ("SELECT * FROM requests WHERE id > ? AND job_id IS NOT NULL AND entry_node IS NOT NULL"
                 f" AND {source} ORDER BY id LIMIT ?")  # fmt: skip
        params: tuple[Any, ...] = (after, limit + 1) if own_only else (after, skip_source or "", limit + 1)
        with self._lock:
            top = int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM requests").fetchone()[0])
            rows = self._select_locked(query, params)
        if len(rows) > limit:
            rows = rows[:limit]
            return rows, int(rows[-1]["id"])
        return rows, max(top, after)

    def _select(self, query: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        with self._lock:
            return self._select_locked(query, params)

    def _select_locked(self, query: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        cursor = self._db.execute(query, params)
        names = [c[0] for c in cursor.description]
        out = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
        for row in out:
            row["tags"] = _json_list(row.get("tags"))
            row["attempts"] = _json_list(row.get("attempts"))
        return out

    # -- where each peer's changes were read up to ----------------------------------------------------------------
    def cursor(self, node_id: str) -> tuple[str, int]:
        with self._lock:
            found = self._db.execute("SELECT db, seq FROM sync_cursors WHERE node_id = ?", (node_id,)).fetchone()
        return (str(found[0]), int(found[1])) if found else ("", 0)

    def set_cursor(self, node_id: str, db: str, seq: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO sync_cursors (node_id, db, seq) VALUES (?, ?, ?)",
                             (node_id, db, seq))  # fmt: skip


def _encoded(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {c: row.get(c) for c in ROW_COLUMNS}
    out["tags"] = json.dumps(list(row.get("tags") or ()))
    attempts = row.get("attempts")
    out["attempts"] = json.dumps(list(attempts)) if attempts else None
    return out


def _json_list(text: Any) -> list[Any]:
    try:
        value = json.loads(text) if isinstance(text, str) and text else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


SHARED_COLUMNS = ROW_COLUMNS  # what a peer hands another: every column but the local row id and source


def shared_rows(
    records: Records,
    *,
    since: float,
    kind: str | None = None,
    limit: int,
    prompts: bool = False,
    entry_node: str | None = None,
) -> dict[str, Any]:
    """This peer's rows for another peer to merge: the newest `limit`, oldest first, and whether cut.
    Prompts stay on this Mac unless `prompts`; `entry_node`: only the requests that entered the mesh there."""
    rows = records.rows(since=since, kind=kind, limit=limit + 1, entry_node=entry_node)
    truncated = len(rows) > limit
    kept = rows[1:] if truncated else rows
    return {"rows": [shared(row, prompts=prompts) for row in kept], "truncated": truncated}


def shared(row: Mapping[str, Any], *, prompts: bool) -> dict[str, Any]:
    """One row as it travels: without the local id and source, and without the prompt unless `prompts`."""
    return {k: row.get(k) for k in SHARED_COLUMNS if prompts or k != "prompt"}
