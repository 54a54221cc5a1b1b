"""Run artifacts (screenshots the agent saw, and the like): files kept per run.

Artifacts live under ``<data dir>/artifacts/<run id>/<name>``, are named in the
run's events (a ``tool_call``'s ``screenshot``), served by
``GET /v1/runs/{id}/artifacts/{name}``, and removed with the run: a worker
sweeps away the artifacts of runs finished more than
``CUAFLOW_ARTIFACT_RETENTION_DAYS`` days ago (default 30; 0 keeps them forever).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import sqlalchemy as sa

from cuaflow.errors import NotFound
from cuaflow.store import tables
from cuaflow.store.database import translate_errors

RETENTION_ENV = "CUAFLOW_ARTIFACT_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 30.0
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".txt": "text/plain",
    ".json": "application/json",
}


class ArtifactStore:
    """Files of runs under one directory."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "artifacts"

    def save(self, run_id: str, name: str, data: bytes) -> str:
        """Write an artifact (atomically) and return its name."""
        path = self.path(run_id, name, must_exist=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{name}.partial")
        partial.write_bytes(data)
        os.replace(partial, path)
        return name

    def path(self, run_id: str, name: str, *, must_exist: bool = True) -> Path:
        """Where an artifact is; ``NotFound`` for a bad name or, if required, a missing file."""
        if not NAME_PATTERN.match(name) or not NAME_PATTERN.match(run_id):
            raise NotFound(f"no artifact '{name}'")
        path = self.root / run_id / name
        if must_exist and not path.is_file():
            raise NotFound(f"run '{run_id}' has no artifact '{name}'")
        return path

    def names(self, run_id: str) -> list[str]:
        """The run's artifacts, oldest first."""
        folder = self.root / run_id
        if not NAME_PATTERN.match(run_id) or not folder.is_dir():
            return []
        files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
        return [p.name for p in sorted(files, key=lambda p: (p.stat().st_mtime, p.name))]

    def sweep(self, engine: sa.Engine, retention_days: float | None = None) -> list[str]:
        """Delete the artifacts of runs that finished before the retention window; return them."""
        days = retention_days if retention_days is not None else retention_from_env()
        if days <= 0 or not self.root.is_dir():
            return []
        cutoff = time.time() - days * 86_400
        present = [p.name for p in self.root.iterdir() if p.is_dir()]
        if not present:
            return []
        runs = tables.runs
        query = sa.select(runs.c.id).where(
            runs.c.id.in_(present), runs.c.finished_at.is_not(None), runs.c.finished_at < cutoff
        )
        with translate_errors(), engine.connect() as conn:
            expired = list(conn.execute(query).scalars())
        for run_id in expired:
            shutil.rmtree(self.root / run_id, ignore_errors=True)
        return expired


def retention_from_env() -> float:
    """The retention window in days from the environment (0 keeps artifacts forever)."""
    raw = os.environ.get(RETENTION_ENV)
    try:
        return float(raw) if raw else DEFAULT_RETENTION_DAYS
    except ValueError:
        return DEFAULT_RETENTION_DAYS


def content_type(name: str) -> str:
    """The media type an artifact is served with."""
    return CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")
