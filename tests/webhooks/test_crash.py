"""SIGKILL the worker between a run's status change and its webhook: the event still arrives once."""

from __future__ import annotations

import collections
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cuaflow.dsl.parse import parse_workflow
from cuaflow.engine.start import RunOptions, start_workflow_run
from cuaflow.store import runs as store
from cuaflow.store import webhooks as outbox
from cuaflow.store.database import open_database
from tests.db import database_url
from tests.processes import kill, start_worker, wait_until
from tests.webhooks.receiver import Answer, Receiver, check_signatures

pytestmark = pytest.mark.slow

WORKFLOW = {
    "name": "crash-webhooks",
    "steps": [
        {"id": "gate", "type": "human_approval", "message": "go on?"},
        {"id": "done", "type": "succeed", "output": {"ok": True}},
    ],
}
TIMEOUT_SECONDS = 2  # the claimed attempt's lease is this plus 5 s


def _start_worker(db_url: str, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    return start_worker(
        db_url,
        data_dir,
        log,
        env={
            "CUAFLOW_WEBHOOK_ALLOW_PRIVATE": "1",
            "CUAFLOW_WEBHOOK_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
            "CUAFLOW_WEBHOOK_RETRY_BASE_SECONDS": "0.1",
            "CUAFLOW_WEBHOOK_POLL_SECONDS": "0.05",
        },
    )


def _deliveries(engine: sa.Engine, run_id: str) -> list[dict[str, Any]]:
    return outbox.list_deliveries(engine, run_id)


def test_deliveries_survive_sigkill_and_arrive_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill mid-delivery, and a cancel while no worker runs, both end delivered exactly once."""
    monkeypatch.setenv("CUAFLOW_WEBHOOK_ALLOW_PRIVATE", "1")  # for start_workflow_run here
    db_url = database_url(tmp_path)
    engine = open_database(db_url)
    log = tmp_path / "worker.log"
    hold = threading.Event()
    answered_first_success = threading.Event()

    def plan(_n: int, payload: dict[str, Any]) -> Answer:
        # The first run.succeeded request is never answered: the worker dies meanwhile.
        if payload["event"] == "run.succeeded" and not answered_first_success.is_set():
            answered_first_success.set()
            return Answer(200, hold=hold)
        return Answer(200)

    with Receiver(plan) as receiver:
        workflow = parse_workflow(WORKFLOW)
        finishing, cancelled = (
            str(start_workflow_run(engine, workflow, RunOptions(webhook_url=receiver.url))["id"])
            for _ in range(2)
        )
        worker = _start_worker(db_url, tmp_path / "data", log)
        try:
            wait_until(lambda: len(receiver.received) == 2, 30)  # both runs await a human
            store.resume_run(engine, finishing, approved=True)
            wait_until(lambda: len(receiver.received) == 3, 30)  # run.succeeded is in flight
        finally:
            kill(worker)
        hold.set()

        in_flight = _deliveries(engine, finishing)[1]
        assert store.get_run(engine, finishing)["status"] == "succeeded"
        assert (in_flight["status"], in_flight["attempts"]) == ("pending", 0)
        # With no worker alive, the API side cancels the other run: its event waits in the outbox.
        assert store.request_cancel(engine, cancelled) == "cancelled"
        assert [d["event"] for d in _deliveries(engine, cancelled)][-1] == "run.cancelled"
        time.sleep(0.3)
        assert len(receiver.received) == 3

        worker = _start_worker(db_url, tmp_path / "data", log)
        try:
            wait_until(
                lambda: all(
                    d["status"] == "delivered"
                    for run_id in (finishing, cancelled)
                    for d in _deliveries(engine, run_id)
                ),
                30,
            )
            time.sleep(0.3)
        finally:
            kill(worker)

    answered = [r for r in receiver.received if r.answer.hold is None]
    counts = collections.Counter(r.headers["webhook-id"] for r in answered)
    assert set(counts.values()) == {1}, "a delivery was answered twice"
    for run_id, events in [
        (finishing, ["run.awaiting_human", "run.succeeded"]),
        (cancelled, ["run.awaiting_human", "run.cancelled"]),
    ]:
        mine = [r for r in answered if r.payload["run_id"] == run_id]
        assert [r.event for r in mine] == events
        secret = str(store.get_run(engine, run_id)["webhook_secret"])
        for request in mine:
            check_signatures(secret, request)
        rows = _deliveries(engine, run_id)
        assert [(d["status"], d["attempts"]) for d in rows] == [("delivered", 1)] * 2
        assert [d["id"] for d in rows] == [r.headers["webhook-id"] for r in mine]
    [killed] = [r for r in receiver.received if r.answer.hold is not None]
    retried = next(r for r in answered if r.headers["webhook-id"] == in_flight["id"])
    assert killed.body == retried.body
    # The retry waited for the killed attempt's lease to lapse, not less.
    assert retried.at - killed.at >= TIMEOUT_SECONDS
