"""Artifacts are stored per run, refused under unsafe names, and swept after their retention."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from cuaflow.errors import NotFound
from cuaflow.store import tables
from cuaflow.store.artifacts import ArtifactStore
from tests.integration.engine_harness import Harness, wf


async def test_sweep_removes_only_runs_finished_before_the_window(harness: Harness) -> None:
    """A run finished long ago loses its artifacts; a recent or unfinished one keeps them."""
    store = ArtifactStore(harness.data_dir)
    old = (await harness.run(wf({"id": "s", "type": "succeed"})))["id"]
    recent = (await harness.run(wf({"id": "s", "type": "succeed"})))["id"]
    waiting = harness.start(wf({"id": "g", "type": "human_approval", "message": "?"}))
    await harness.wait(waiting, {"awaiting_human"})
    for run_id in (old, recent, waiting):
        store.save(run_id, "shot.png", b"\x89PNG")
    with harness.engine.begin() as conn:
        conn.execute(
            sa.update(tables.runs)
            .where(tables.runs.c.id == old)
            .values(finished_at=time.time() - 40 * 86_400)
        )
    assert store.sweep(harness.engine, retention_days=30) == [old]
    assert store.names(old) == []
    assert store.names(recent) == ["shot.png"]
    assert store.names(waiting) == ["shot.png"]
    assert store.sweep(harness.engine, retention_days=0) == []  # 0 keeps everything


@pytest.mark.parametrize("name", ["../escape.png", ".hidden", "a/b.png", "", "x" * 200])
def test_unsafe_names_are_not_found(harness: Harness, name: str) -> None:
    """Names that could leave the run's folder are refused as not found."""
    with pytest.raises(NotFound):
        ArtifactStore(harness.data_dir).path("wfr_1", name)
