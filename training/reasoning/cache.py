"""The teacher's answer cache: keyed by (content hash, prompt version, teacher id), append-only SQLite.

Every finished pair (accepted or rejected) is committed as soon as its batch ends, so an
interrupted run resumes without asking the teacher again for anything it already answered.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CachedAnswer:
    """A finished teacher answer: accepted (with its validated JSON) or rejected (with the error)."""

    status: str  # 'accepted' | 'rejected' ('unanswered', a transport failure, is never stored)
    raw_text: str
    parsed_json: str | None
    error: str | None
    attempts: int


log = logging.getLogger(__name__)


class AnswerCache:
    """SQLite table of teacher answers; `get`/`put` by key."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self._open()
        except sqlite3.DatabaseError as err:  # a torn or foreign file: set aside, start empty
            self.db.close()
            aside = path.with_name(path.name + ".unreadable")
            log.warning("teacher cache %s is unreadable (%s): moved to %s, answers are asked again",
                        path, err, aside.name)
            path.replace(aside)
            self._open()

    def _open(self) -> None:
        self.db = sqlite3.connect(self.path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS answers (content_hash TEXT, prompt_version TEXT, teacher_id TEXT, "
            "status TEXT, raw_text TEXT, parsed_json TEXT, error TEXT, attempts INTEGER, created_at REAL, "
            "PRIMARY KEY (content_hash, prompt_version, teacher_id))"
        )
        self.db.execute("SELECT count(*) FROM answers").fetchone()  # reads the pages: a torn file fails here
        self.db.commit()

    def get_many(self, keys: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], CachedAnswer]:
        """The cached answers among `keys`."""
        found: dict[tuple[str, str, str], CachedAnswer] = {}
        for key in keys:
            row = self.db.execute(
                "SELECT status, raw_text, parsed_json, error, attempts FROM answers WHERE content_hash=? "
                "AND prompt_version=? AND teacher_id=?",
                key,
            ).fetchone()
            if row:
                found[key] = CachedAnswer(*row)
        return found

    def put_many(self, rows: list[tuple[tuple[str, str, str], CachedAnswer]]) -> None:
        """Store finished answers and commit (the resume point)."""
        now = time.time()
        self.db.executemany(
            "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(*key, a.status, a.raw_text, a.parsed_json, a.error, a.attempts, now) for key, a in rows],
        )
        self.db.commit()

    def close(self) -> None:
        """Close the database."""
        self.db.close()
