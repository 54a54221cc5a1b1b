"""Webhook delivery end to end: a real worker, a real receiver on loopback, real signatures."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cuaflow.errors import NotFound
from cuaflow.store import runs as store
from cuaflow.store import webhooks as outbox
from tests.integration.engine_harness import Harness, wf
from tests.webhooks.receiver import Answer, Receiver, Script, answers, check_signatures

GATE = {"id": "gate", "type": "human_approval", "message": "ship it?"}
DONE = {"id": "done", "type": "succeed", "output": {"shipped": True}}
APPROVAL_THEN_SUCCESS = wf(GATE, DONE)
PAYLOAD_KEYS = {
    "event",
    "run_id",
    "workflow_id",
    "status",
    "output",
    "error",
    "awaiting_step_id",
    "created_at",
}


@pytest.fixture(autouse=True)
def fast_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback receivers allowed; retries, polls and timeouts short enough for tests."""
    monkeypatch.setenv("CUAFLOW_WEBHOOK_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("CUAFLOW_WEBHOOK_RETRY_BASE_SECONDS", "0.05")
    monkeypatch.setenv("CUAFLOW_WEBHOOK_POLL_SECONDS", "0.02")
    monkeypatch.setenv("CUAFLOW_WEBHOOK_TIMEOUT_SECONDS", "0.5")


@pytest.fixture
def receiver_factory() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def make(*script: Answer, plan: Script | None = None) -> Receiver:
        receiver = Receiver(plan or answers(*script)).__enter__()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.__exit__()


async def until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out waiting")


def _deliveries(harness: Harness, run_id: str) -> list[dict[str, Any]]:
    return outbox.list_deliveries(harness.engine, run_id)


def _settled(harness: Harness, run_id: str, count: int) -> Callable[[], bool]:
    def check() -> bool:
        rows = _deliveries(harness, run_id)
        return len(rows) >= count and all(row["status"] != "pending" for row in rows)

    return check


def _secret(harness: Harness, run_id: str) -> str:
    return str(store.get_run(harness.engine, run_id)["webhook_secret"])


async def test_waiting_and_finishing_are_announced_signed_and_in_order(
    harness: Harness, receiver_factory: Callable[..., Receiver]
) -> None:
    """run.awaiting_human then run.succeeded arrive with the contract's body and valid signatures."""
    receiver = receiver_factory()
    run_id = harness.start(APPROVAL_THEN_SUCCESS, webhook_url=receiver.url)
    await harness.wait(run_id, {"awaiting_human"})
    await until(lambda: len(receiver.received) == 1)
    store.resume_run(harness.engine, run_id, approved=True)
    await harness.wait(run_id)
    await until(_settled(harness, run_id, 2))

    secret = _secret(harness, run_id)
    waiting, finished = receiver.received
    for request in receiver.received:
        check_signatures(secret, request)
        assert request.headers["content-type"] == "application/json"
        assert set(request.payload) == PAYLOAD_KEYS
    assert waiting.payload | {"created_at": None} == {
        "event": "run.awaiting_human",
        "run_id": run_id,
        "workflow_id": None,
        "status": "awaiting_human",
        "output": None,
        "error": None,
        "awaiting_step_id": "gate",
        "created_at": None,
    }
    assert finished.payload["event"] == "run.succeeded"
    assert finished.payload["status"] == "succeeded"
    assert finished.payload["output"] == {"shipped": True}
    assert finished.payload["awaiting_step_id"] is None
    assert finished.payload["created_at"].endswith("Z")

    rows = _deliveries(harness, run_id)
    assert [(r["event"], r["status"], r["attempts"], r["last_status_code"]) for r in rows] == [
        ("run.awaiting_human", "delivered", 1, 200),
        ("run.succeeded", "delivered", 1, 200),
    ]
    assert [r["id"] for r in rows] == [q.headers["webhook-id"] for q in receiver.received]
    assert all(r["delivered_at"] is not None and r["next_attempt_at"] is None for r in rows)


async def test_runs_without_a_webhook_url_write_no_deliveries(harness: Harness) -> None:
    """A run started without webhook_url finishes with an empty delivery list."""
    run = await harness.run(wf(DONE))
    assert run["status"] == "succeeded"
    assert _deliveries(harness, run["id"]) == []


async def test_a_failing_receiver_is_retried_until_it_answers(
    harness: Harness, receiver_factory: Callable[..., Receiver]
) -> None:
    """After 500, 502 and a timeout, the fourth attempt delivers the same body and webhook-id."""
    receiver = receiver_factory(Answer(500), Answer(502), Answer(200, delay=1.0))
    run = await harness.run(wf(DONE), webhook_url=receiver.url)
    await until(_settled(harness, run["id"], 1))

    requests = receiver.received
    assert len(requests) == 4
    assert len({r.body for r in requests}) == 1
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    for request in requests:
        check_signatures(_secret(harness, run["id"]), request)
    [row] = _deliveries(harness, run["id"])
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("delivered", 4, 200)
    assert row["last_error"] is None
    # The third request was cut off by the 0.5 s timeout before its answer came.
    assert requests[3].at - requests[2].at >= 0.5


async def test_a_timeout_is_recorded_as_the_attempts_error(
    harness: Harness, receiver_factory: Callable[..., Receiver]
) -> None:
    """An attempt with no answer within the timeout leaves last_error and a next attempt."""
    assert harness.worker is not None
    harness.worker.webhooks.settings = dataclasses.replace(
        harness.worker.webhooks.settings, retry_base_seconds=3600
    )
    receiver = receiver_factory(Answer(200, delay=2.0))
    run = await harness.run(wf(DONE), webhook_url=receiver.url)
    await until(lambda: _deliveries(harness, run["id"])[0]["attempts"] == 1)

    [row] = _deliveries(harness, run["id"])
    assert row["status"] == "pending"
    assert row["last_status_code"] is None
    assert row["last_error"] == "no answer within 0.5 s"
    assert time.time() < row["next_attempt_at"] <= time.time() + 3600


async def test_410_stops_this_delivery_and_later_ones_to_that_url(
    harness: Harness, receiver_factory: Callable[..., Receiver]
) -> None:
    """A 410 (answered while the next event waits its turn) stops both; nothing else is sent."""
    receiver = receiver_factory(Answer(410, delay=0.3))
    run_id = harness.start(APPROVAL_THEN_SUCCESS, webhook_url=receiver.url)
    await until(lambda: len(receiver.received) == 1)
    store.resume_run(harness.engine, run_id, approved=True)
    run = await harness.wait(run_id)
    await until(_settled(harness, run_id, 2))
    await asyncio.sleep(0.2)

    assert run["status"] == "succeeded"
    assert len(receiver.received) == 1
    first, second = _deliveries(harness, run_id)
    assert (first["status"], first["attempts"], first["last_status_code"]) == ("stopped", 1, 410)
    assert (second["status"], second["attempts"]) == ("stopped", 0)
    assert first["id"] in second["last_error"]


async def test_events_after_a_410_are_written_stopped(
    harness: Harness, receiver_factory: Callable[..., Receiver]
) -> None:
    """Once a URL answered 410 for a run, the run's later events to it are never sent."""
    receiver = receiver_factory(Answer(410))
    run_id = harness.start(APPROVAL_THEN_SUCCESS, webhook_url=receiver.url)
    await until(_settled(harness, run_id, 1))
    store.resume_run(harness.engine, run_id, approved=True)
    await harness.wait(run_id)
    await asyncio.sleep(0.2)

    assert len(receiver.received) == 1
    assert [(d["event"], d["status"]) for d in _deliveries(harness, run_id)] == [
        ("run.awaiting_human", "stopped"),
        ("run.succeeded", "stopped"),
    ]


async def test_429_with_retry_after_waits_as_asked(
    harness: Harness, receiver_factory: Callable[..., Receiver]
) -> None:
    """A 429 with Retry-After: 1 delays the next attempt by a second, not by the 0.05 s backoff."""
    receiver = receiver_factory(Answer(429, headers={"Retry-After": "1"}))
    run = await harness.run(wf(DONE), webhook_url=receiver.url)
    await until(_settled(harness, run["id"], 1))

    first, second = receiver.received
    assert second.at - first.at >= 0.95
    [row] = _deliveries(harness, run["id"])
    assert (row["status"], row["attempts"]) == ("delivered", 2)


async def test_a_runs_later_event_waits_for_the_earlier_one(
    harness: Harness, receiver_factory: Callable[..., Receiver]
) -> None:
    """While run.awaiting_human is retried, run.succeeded (already due) is not sent."""
    retry_soon = Answer(503, headers={"Retry-After": "1"})
    receiver = receiver_factory(retry_soon, retry_soon)
    run_id = harness.start(APPROVAL_THEN_SUCCESS, webhook_url=receiver.url)
    await until(lambda: len(receiver.received) == 1)
    store.resume_run(harness.engine, run_id, approved=True)
    await harness.wait(run_id)
    await until(_settled(harness, run_id, 2))

    assert [r.event for r in receiver.received] == [
        "run.awaiting_human",
        "run.awaiting_human",
        "run.awaiting_human",
        "run.succeeded",
    ]


async def test_redeliver_sends_the_same_message_again(
    harness: Harness, receiver_factory: Callable[..., Receiver]
) -> None:
    """Redelivering a delivered event resends its body and webhook-id and counts the attempt."""
    receiver = receiver_factory()
    run = await harness.run(wf(DONE), webhook_url=receiver.url)
    await until(_settled(harness, run["id"], 1))
    [delivered] = _deliveries(harness, run["id"])

    again = outbox.redeliver(harness.engine, run["id"], delivered["id"])
    assert again["status"] == "pending"
    assert again["id"] == delivered["id"]
    await until(lambda: len(receiver.received) == 2)
    await until(_settled(harness, run["id"], 1))

    first, second = receiver.received
    assert first.body == second.body
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    [row] = _deliveries(harness, run["id"])
    assert (row["status"], row["attempts"]) == ("delivered", 2)
    with pytest.raises(NotFound):
        outbox.redeliver(harness.engine, run["id"], "whd_missing")
    with pytest.raises(NotFound):
        outbox.list_deliveries(harness.engine, run["id"], tenant_id="someone-else")


async def test_a_cancel_from_the_api_side_is_announced(
    harness: Harness, receiver_factory: Callable[..., Receiver]
) -> None:
    """request_cancel of a waiting run writes run.cancelled in its own transaction."""
    receiver = receiver_factory()
    run_id = harness.start(APPROVAL_THEN_SUCCESS, webhook_url=receiver.url)
    await until(lambda: len(receiver.received) == 1)
    assert store.request_cancel(harness.engine, run_id) == "cancelled"
    await until(lambda: len(receiver.received) == 2)

    cancelled = receiver.received[1].payload
    assert (cancelled["event"], cancelled["status"]) == ("run.cancelled", "cancelled")
    assert cancelled["error"]["code"] == "CANCELLED"


async def test_a_delivery_that_gives_up_leaves_the_run_alone(
    harness: Harness, receiver_factory: Callable[..., Receiver]
) -> None:
    """A receiver answering 500 forever ends the delivery failed; the run stays as it was."""
    assert harness.worker is not None
    harness.worker.webhooks.settings = dataclasses.replace(
        harness.worker.webhooks.settings, give_up_after_seconds=0.3
    )
    receiver = receiver_factory(plan=lambda n, payload: Answer(500))
    run = await harness.run(wf(DONE), webhook_url=receiver.url)
    events_before = harness.events(run["id"])
    await until(_settled(harness, run["id"], 1))

    [row] = _deliveries(harness, run["id"])
    assert (row["status"], row["last_status_code"]) == ("failed", 500)
    assert row["attempts"] == len(receiver.received) >= 2
    after = store.get_run(harness.engine, run["id"])
    assert (after["status"], after["finished_at"]) == ("succeeded", run["finished_at"])
    assert harness.events(run["id"]) == events_before


async def test_the_url_is_checked_again_at_delivery(
    harness: Harness, receiver_factory: Callable[..., Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loopback URL allowed at creation is not called once the operator flag is gone."""
    receiver = receiver_factory()
    run_id = harness.start(wf(DONE), webhook_url=receiver.url)
    monkeypatch.delenv("CUAFLOW_WEBHOOK_ALLOW_PRIVATE")
    await harness.wait(run_id)
    await until(lambda: _deliveries(harness, run_id)[0]["attempts"] >= 1)

    assert receiver.received == []
    row = _deliveries(harness, run_id)[0]
    assert row["status"] == "pending"
    assert "refused to call the URL" in row["last_error"]
    assert "loopback" in row["last_error"]
