"""The profile cache: measured times in SQLite, so a second `tune` measures nothing.

Keyed by the target fingerprint (CPU, compiler and flags), the routine instance
(routine, layout, parameters), the layer signature and the hash of the routine's
template, so a changed template or compiler is measured again. WAL mode and a busy
timeout make two concurrent runs safe; each batch is stored in one transaction.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path

from ..errors import NeurogenError
from .harness import Item, Measurement

SCHEMA = """
CREATE TABLE IF NOT EXISTS measurements (
    target TEXT NOT NULL,
    instance TEXT NOT NULL,
    signature TEXT NOT NULL,
    template TEXT NOT NULL,
    ok INTEGER NOT NULL,
    error REAL NOT NULL,
    median_us REAL NOT NULL,
    min_us REAL NOT NULL,
    max_us REAL NOT NULL,
    mad_us REAL NOT NULL,
    reps INTEGER NOT NULL,
    PRIMARY KEY (target, instance, signature, template)
)
"""


def default_path() -> Path:
    """$NEUROGEN_CACHE_DIR, else $XDG_CACHE_HOME/neurogen, else ~/.cache/neurogen."""
    base = os.environ.get("NEUROGEN_CACHE_DIR")
    if not base:
        base = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "neurogen")
    return Path(base) / "profiles.sqlite"


class ProfileCache:
    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as db, db:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise NeurogenError(f"profile cache {self.path}: cannot open it ({exc}); set NEUROGEN_CACHE_DIR "
                                "to a writable folder") from None

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    @staticmethod
    def _row_key(target: str, item: Item) -> tuple[str, str, str, str]:
        return (target, item.selection.key, item.signature, item.selection.routine.template_hash())

    def lookup(self, target: str, items: Iterable[Item]) -> dict[str, Measurement]:
        """Cached measurements of `items` on `target`, by item key."""
        found = {}
        with closing(self._connect()) as db:
            for item in items:
                row = db.execute(
                    "SELECT ok, error, median_us, min_us, max_us, mad_us, reps FROM measurements "
                    "WHERE target=? AND instance=? AND signature=? AND template=?",
                    self._row_key(target, item)).fetchone()
                if row:
                    found[item.key] = Measurement(item.key, bool(row[0]), *row[1:6], int(row[6]))
        return found

    def store(self, target: str, items: Iterable[Item], measured: dict[str, Measurement]) -> None:
        rows = [(*self._row_key(target, item), int(m.ok), m.error, m.median_us, m.min_us, m.max_us, m.mad_us,
                 m.reps) for item in items if (m := measured.get(item.key))]
        with closing(self._connect()) as db, db:
            db.executemany("INSERT OR REPLACE INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def count(self, target: str | None = None) -> int:
        with closing(self._connect()) as db:
            if target is None:
                return db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
            return db.execute("SELECT COUNT(*) FROM measurements WHERE target=?", (target,)).fetchone()[0]
