"""Two API replicas and a worker process on one PostgreSQL database: events and wake-ups cross over.

Every process polls slowly here (5 s), so anything faster than that arrived by
LISTEN/NOTIFY: the SSE client on replica A sees the events the worker commits,
and a resume sent to replica B reaches the worker within well under a second.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from cuaflow.store.database import open_database
from cuaflow.store.keys import create_key
from tests.processes import Replica, kill, start_worker, wait_until

pytestmark = pytest.mark.slow

SLOW_POLLS = {"CUAFLOW_SSE_POLL_SECONDS": "5", "CUAFLOW_WORKER_POLL_SECONDS": "5"}
WORKFLOW = {
    "name": "cross-replica",
    "steps": [
        {"id": "gate", "type": "human_approval", "message": "go on?"},
        {
            "id": "work",
            "type": "task",
            "task": "say hi",
            "actions": [{"type": "bash", "command": "echo hi"}],
        },
        {"id": "done", "type": "succeed", "output": {"ok": True}},
    ],
}


class Deployment:
    """Replicas A and B (no workers) and one worker process, all on one database."""

    def __init__(self, db_url: str, tmp_path: Path) -> None:
        engine = open_database(db_url)
        self.key, _ = create_key(engine)
        engine.dispose()
        data = tmp_path / "data"
        self.a = Replica(db_url, data, tmp_path / "a.log", worker=False, **SLOW_POLLS)
        self.b = Replica(db_url, data, tmp_path / "b.log", worker=False, **SLOW_POLLS)
        self.worker = start_worker(db_url, data, tmp_path / "worker.log", env=SLOW_POLLS)
        self.logs = [tmp_path / name for name in ("a.log", "b.log", "worker.log")]
        self.a.wait_ready()
        self.b.wait_ready()

    def client(self, replica: Replica) -> httpx.Client:
        return httpx.Client(base_url=replica.url, headers={"X-API-Key": self.key}, timeout=30)

    def stop(self) -> None:
        for process in (self.a.process, self.b.process, self.worker):
            kill(process)


@pytest.fixture
def deployment(postgres_url: str, tmp_path: Path) -> Iterator[Deployment]:
    running = Deployment(postgres_url, tmp_path)
    try:
        yield running
    finally:
        running.stop()


class Stream:
    """An SSE client in a thread, keeping each event with the time it arrived."""

    def __init__(self, client: httpx.Client, run_id: str) -> None:
        self.received: list[tuple[float, int, str, dict[str, Any]]] = []
        self._thread = threading.Thread(target=self._read, args=(client, run_id), daemon=True)
        self._thread.start()

    def _read(self, client: httpx.Client, run_id: str) -> None:
        with connect_sse(client, "GET", f"/v1/runs/{run_id}/events") as source:
            for event in source.iter_sse():
                payload = json.loads(event.data)
                self.received.append((time.monotonic(), int(event.id), event.event, payload))

    def first(self, predicate: Any) -> tuple[float, int, str, dict[str, Any]] | None:
        return next((item for item in self.received if predicate(item)), None)

    def join(self) -> None:
        self._thread.join(timeout=10)


def test_sse_on_replica_a_follows_a_run_resumed_on_replica_b(deployment: Deployment) -> None:
    """A's stream carries every event the worker commits, and B's resume wakes the run in < 2 s."""
    with deployment.client(deployment.a) as a, deployment.client(deployment.b) as b:
        saved = a.post("/v1/workflows", json=WORKFLOW)
        assert saved.status_code == 200, saved.text
        started_at = time.monotonic()
        run = a.post(f"/v1/workflows/{saved.json()['id']}/runs", json={})
        assert run.status_code == 200, run.text
        run_id = run.json()["id"]
        stream = Stream(a, run_id)

        def awaiting(item: tuple[float, int, str, dict[str, Any]]) -> bool:
            return item[2] == "status" and item[3].get("status") == "awaiting_human"

        wait_until(lambda: stream.first(awaiting) is not None, 10, "awaiting_human on A")
        waited = stream.first(awaiting)
        assert waited is not None
        # The worker heard of the new run and A heard of its events, all without polling.
        assert waited[0] - started_at < 2.0

        resumed_at = time.monotonic()
        answer = b.post(f"/v1/runs/{run_id}/resume", json={"note": "from B"})
        assert answer.status_code == 200, answer.text

        def by_worker_after_resume(item: tuple[float, int, str, dict[str, Any]]) -> bool:
            return item[1] > waited[1] and item[2] not in ("resumed",)

        wait_until(lambda: any(e[2] == "done" for e in stream.received), 10, "done on A")
        stream.join()
        woke = stream.first(by_worker_after_resume)
        assert woke is not None
        wake_seconds = woke[0] - resumed_at
        print(f"resume on B -> worker's next event on A: {wake_seconds * 1000:.0f} ms")
        assert wake_seconds < 2.0

    seqs = [seq for _, seq, _, _ in stream.received]
    assert seqs == list(range(1, len(seqs) + 1))
    kinds = [kind for _, _, kind, _ in stream.received]
    assert "resumed" in kinds
    assert "tool_call" in kinds
    assert stream.received[-1][3]["status"] == "succeeded"
    for log in deployment.logs:
        assert "Traceback" not in log.read_text(), log.read_text()
