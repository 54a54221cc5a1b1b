"""The outbox in the store: written atomically with status changes, claimed with leases, in order."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from cuaflow.dsl.parse import parse_workflow
from cuaflow.engine.start import RunOptions, start_workflow_run
from cuaflow.store import runs as store
from cuaflow.store import tables
from cuaflow.store import webhooks as outbox
from cuaflow.store.database import open_database
from cuaflow.store.writer import Event, UnitOfWork, apply_units
from cuaflow.webhooks.delivery import WebhookDeliverer, pin_to_address
from cuaflow.webhooks.schedule import DeliverySettings
from tests.db import database_url
from tests.webhooks.receiver import Answer, Receiver, answers, check_signatures

WORKFLOW = parse_workflow({"name": "w", "steps": [{"id": "ok", "type": "succeed"}]})


class Boom(Exception):
    """Raised inside a transaction to roll it back."""


@pytest.fixture(autouse=True)
def allow_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUAFLOW_WEBHOOK_ALLOW_PRIVATE", "1")


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    return open_database(database_url(tmp_path))


def _run(engine: sa.Engine, url: str = "http://127.0.0.1:9/hooks") -> str:
    return str(start_workflow_run(engine, WORKFLOW, RunOptions(webhook_url=url))["id"])


def _apply(engine: sa.Engine, *units: UnitOfWork) -> None:
    with engine.begin() as conn:
        apply_units(conn, list(units))


def _await_human(run_id: str, *, announce: bool = True) -> UnitOfWork:
    unit = UnitOfWork()
    unit.update_run(run_id, status="awaiting_human", awaiting_step_id="gate", runnable_at=None)
    if announce:
        unit.events.append(Event(run_id, "status", {"status": "awaiting_human"}))
    return unit


def _rows(engine: sa.Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        query = sa.select(tables.webhook_deliveries).order_by(tables.webhook_deliveries.c.seq)
        return [dict(row) for row in conn.execute(query).mappings()]


def test_a_rolled_back_status_change_leaves_no_delivery(engine: sa.Engine) -> None:
    """The outbox row lives and dies with the transaction that ends the run."""
    run_id = _run(engine)

    def end_then_fail() -> None:
        with engine.begin() as conn:
            apply_units(conn, [store.finish_unit(run_id, "succeeded", output={"n": 1})])
            raise Boom

    with pytest.raises(Boom):
        end_then_fail()
    assert _rows(engine) == []
    assert store.get_run(engine, run_id)["status"] == "queued"

    _apply(engine, store.finish_unit(run_id, "succeeded", output={"n": 1}))
    [row] = _rows(engine)
    body = json.loads(str(row["body"]))
    assert body["event"] == "run.succeeded"
    assert body["output"] == {"n": 1}
    assert (row["status"], row["seq"], row["url"]) == ("pending", 1, "http://127.0.0.1:9/hooks")


def test_only_announced_statuses_of_subscribed_runs_are_queued(engine: sa.Engine) -> None:
    """queued/running changes and runs without webhook_url write nothing."""
    quiet = str(start_workflow_run(engine, WORKFLOW, RunOptions())["id"])
    loud = _run(engine)
    running = UnitOfWork(events=[Event(loud, "status", {"status": "running"})])
    running.update_run(loud, status="running")
    _apply(engine, running, store.finish_unit(quiet, "failed"))
    assert _rows(engine) == []


def test_reentering_the_same_wait_announces_it_once(engine: sa.Engine) -> None:
    """A replay that suspends again without a new status event adds no second awaiting_human."""
    run_id = _run(engine)
    _apply(engine, _await_human(run_id))
    _apply(engine, _await_human(run_id, announce=False))
    assert [row["event"] for row in _rows(engine)] == ["run.awaiting_human"]


def test_a_run_announces_at_most_one_final_status(engine: sa.Engine) -> None:
    """Even if two ends were written for one run, only the first is announced."""
    run_id = _run(engine)
    _apply(engine, _await_human(run_id), store.finish_unit(run_id, "cancelled"))
    _apply(engine, store.finish_unit(run_id, "failed"))
    assert [(row["seq"], row["event"]) for row in _rows(engine)] == [
        (1, "run.awaiting_human"),
        (2, "run.cancelled"),
    ]


def test_claims_are_leased_and_follow_each_runs_order(engine: sa.Engine) -> None:
    """Only a run's earliest pending delivery is claimable, by one owner until its lease lapses."""
    run_id = _run(engine)
    _apply(engine, _await_human(run_id))
    _apply(engine, store.finish_unit(run_id, "succeeded"))

    [first] = outbox.claim_due(engine, "a", 10, lease_seconds=0.2)
    assert first["event"] == "run.awaiting_human"
    assert first["webhook_secret"] == store.get_run(engine, run_id)["webhook_secret"]
    assert outbox.claim_due(engine, "b", 10, lease_seconds=0.2) == []

    time.sleep(0.25)
    [again] = outbox.claim_due(engine, "b", 10, lease_seconds=30)
    assert again["id"] == first["id"]
    lost = outbox.record_attempt(
        engine, first["id"], "a", status="delivered", status_code=200, error=None,
        next_attempt_at=None,
    )  # fmt: skip
    assert lost is False
    assert outbox.record_attempt(
        engine, first["id"], "b", status="delivered", status_code=200, error=None,
        next_attempt_at=None,
    )  # fmt: skip
    [second] = outbox.claim_due(engine, "a", 10, lease_seconds=30)
    assert second["event"] == "run.succeeded"


async def test_two_deliverers_never_send_one_attempt_twice(engine: sa.Engine) -> None:
    """Two delivery loops on one database deliver 20 runs' events, each exactly once, in order."""
    settings = DeliverySettings(poll_seconds=0.01, timeout_seconds=2)
    with Receiver(lambda n, payload: Answer(200, delay=0.05)) as receiver:
        run_ids = [_run(engine, receiver.url) for _ in range(20)]
        for run_id in run_ids:
            _apply(engine, _await_human(run_id))
            _apply(engine, store.finish_unit(run_id, "succeeded"))
        loops = [
            asyncio.create_task(WebhookDeliverer(engine, owner=o, settings=settings).run_forever())
            for o in ("a", "b")
        ]
        try:
            deadline = time.monotonic() + 10
            while len(receiver.received) < 40 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    ids = [request.headers["webhook-id"] for request in receiver.received]
    assert len(ids) == len(set(ids)) == 40
    for run_id in run_ids:
        mine = [r for r in receiver.received if r.payload["run_id"] == run_id]
        assert [r.event for r in mine] == ["run.awaiting_human", "run.succeeded"]
        for request in mine:
            check_signatures(str(store.get_run(engine, run_id)["webhook_secret"]), request)
    assert {row["status"] for row in _rows(engine)} == {"delivered"}


async def test_a_pinned_request_reaches_the_checked_address_under_the_urls_name() -> None:
    """pin_to_address connects to the given IP while Host keeps the URL's host name and port."""
    with Receiver(answers()) as receiver:
        headers: dict[str, str] = {}
        url = httpx.URL(f"http://localhost:{receiver.port}/hooks")
        target, extensions = pin_to_address(url, "127.0.0.1", headers)
        async with httpx.AsyncClient(trust_env=False) as client:
            response = await client.post(target, content=b"{}", headers=headers)
    assert response.status_code == 200
    assert receiver.received[0].headers["host"] == f"localhost:{receiver.port}"
    assert extensions == {"sni_hostname": "localhost"}

    https: dict[str, str] = {}
    pinned, tls = pin_to_address(httpx.URL("https://example.com/x?y=1"), "2606:2800::1", https)
    assert str(pinned) == "https://[2606:2800::1]/x?y=1"
    assert https == {"Host": "example.com"}
    assert tls == {"sni_hostname": "example.com"}
