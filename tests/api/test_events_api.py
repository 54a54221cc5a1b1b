"""Server-Sent Events against a real server: framing, replay, live follow, reconnects, keepalive."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse, connect_sse

from tests.api.conftest import Server
from tests.api.helpers import (
    approval_workflow,
    bash_task,
    create_workflow,
    start_run,
    tasks_workflow,
    wait_for,
)

Event = tuple[int, str, dict[str, Any]]


def read_all(api: httpx.Client, run_id: str, **params: Any) -> list[Event]:
    """Every frame of one connection, until the server closes it."""
    headers = params.pop("headers", {})
    with connect_sse(api, "GET", f"/v1/runs/{run_id}/events", params=params, headers=headers) as s:
        return [(int(e.id), e.event, json.loads(e.data)) for e in s.iter_sse()]


def test_frames_are_id_event_data_and_stream_closes_after_done(api: httpx.Client) -> None:
    """A finished run replays as `id/event/data` frames with gap-free seqs and closes after done."""
    saved = create_workflow(api, tasks_workflow(2, "echo hi"))
    run_id = wait_for(api, start_run(api, saved["id"])["id"])["id"]
    with api.stream("GET", f"/v1/runs/{run_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["X-Request-Id"]
        raw = stream.read().decode()
    frames = raw.split("\n\n")
    assert frames[-1] == ""
    first = frames[0].split("\n")
    assert first[0] == "id: 1"
    assert first[1] == "event: status"
    assert json.loads(first[2].removeprefix("data: ")) == {"status": "queued"}
    events = read_all(api, run_id)
    assert [seq for seq, _, _ in events] == list(range(1, len(events) + 1))
    assert events[-1][1] == "done"
    assert events[-1][2]["status"] == "succeeded"


def test_task_steps_tool_calls_are_tagged_with_step_id(api: httpx.Client) -> None:
    """A workflow run's stream carries its task steps' tool_call events, each with its step_id."""
    saved = create_workflow(api, tasks_workflow(2, "echo tagged"))
    run_id = wait_for(api, start_run(api, saved["id"])["id"])["id"]
    calls = [data for _, kind, data in read_all(api, run_id) if kind == "tool_call"]
    assert [call["step_id"] for call in calls] == ["t0", "t1"]
    assert (calls[0]["action"]["type"], calls[0]["action"]["command"]) == ("bash", "echo tagged")


def test_last_event_id_and_after_replay_exactly_the_rest(api: httpx.Client) -> None:
    """Last-Event-ID and ?after=N both give exactly the events after N; ?after wins."""
    saved = create_workflow(api, tasks_workflow(2, "true"))
    run_id = wait_for(api, start_run(api, saved["id"])["id"])["id"]
    full = read_all(api, run_id)
    for cut in (0, 1, 3, len(full) - 1, len(full)):
        assert read_all(api, run_id, headers={"Last-Event-ID": str(cut)}) == full[cut:]
        assert read_all(api, run_id, after=cut) == full[cut:]
    assert read_all(api, run_id, after=2, headers={"Last-Event-ID": "5"}) == full[2:]
    bad = api.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": "abc"})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["loc"] == ["header", "Last-Event-ID"]
    assert api.get(f"/v1/runs/{run_id}/events", params={"after": -1}).status_code == 422


def test_live_stream_follows_a_waiting_run_with_keepalives(api: httpx.Client) -> None:
    """A stream opened before a run pauses delivers events live, keeps alive, and ends at done."""
    saved = create_workflow(api, approval_workflow("live"))
    run_id = start_run(api, saved["id"])["id"]
    seen: list[str] = []
    keepalives_while_waiting = 0
    with api.stream("GET", f"/v1/runs/{run_id}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                seen.append(line.removeprefix("event: "))
            if line == ": keepalive" and "awaiting_human" in seen and "resumed" not in seen:
                keepalives_while_waiting += 1
                # The stream stays open and alive while the run waits; now answer it.
                assert api.post(f"/v1/runs/{run_id}/resume").status_code == 200
    assert keepalives_while_waiting == 1
    assert seen[0] == "status"
    assert "awaiting_human" in seen
    assert seen.index("resumed") > seen.index("awaiting_human")
    assert seen[-1] == "done"


def test_reconnecting_after_every_single_event_loses_and_repeats_nothing(
    api: httpx.Client,
) -> None:
    """Reading one event per connection over a live run, reconnecting each time, yields the log."""
    saved = create_workflow(api, tasks_workflow(4, "sleep 0.01"))
    run_id = start_run(api, saved["id"])["id"]
    got: list[Event] = []
    while not got or got[-1][1] != "done":
        last = str(got[-1][0]) if got else ""
        headers = {"Last-Event-ID": last} if last else {}
        with connect_sse(api, "GET", f"/v1/runs/{run_id}/events", headers=headers) as source:
            event = next(source.iter_sse())
            got.append((int(event.id), event.event, json.loads(event.data)))
    assert got == read_all(api, run_id)
    assert [seq for seq, _, _ in got] == list(range(1, len(got) + 1))


async def test_disconnect_after_k_events_for_every_k(server: Server, tenant: str) -> None:
    """For every k, a client that drops after k live events and reconnects gets the exact log."""
    key = server.key(tenant)
    async with httpx.AsyncClient(
        base_url=server.url, headers={"X-API-Key": key}, timeout=30
    ) as client:
        document = {"name": "k", "steps": [bash_task(f"s{i}", "sleep 0.02") for i in range(3)]}
        workflow = (await client.post("/v1/workflows", json=document)).json()

        async def one_client(k: int) -> tuple[list[Event], str]:
            run_id = (await client.post(f"/v1/workflows/{workflow['id']}/runs")).json()["id"]
            got: list[Event] = []
            url = f"/v1/runs/{run_id}/events"
            async with aconnect_sse(client, "GET", url) as source:
                async for event in source.aiter_sse():
                    if len(got) == k:
                        break
                    got.append((int(event.id), event.event, json.loads(event.data)))
            headers = {"Last-Event-ID": str(got[-1][0])} if got else {}
            async with aconnect_sse(client, "GET", url, headers=headers) as source:
                got += [(int(e.id), e.event, json.loads(e.data)) async for e in source.aiter_sse()]
            return got, run_id

        full_length = 0
        results = await asyncio.gather(*(one_client(k) for k in range(24)))
        for got, run_id in results:
            async with aconnect_sse(client, "GET", f"/v1/runs/{run_id}/events") as source:
                full = [(int(e.id), e.event, json.loads(e.data)) async for e in source.aiter_sse()]
            assert got == full
            full_length = len(full)
        # k ran past the end of the log, so every point of a run was covered.
        assert full_length < 24


def test_finished_task_run_without_done_closes(api: httpx.Client) -> None:
    """The stream of a cancelled run ends after replay even when no more events come."""
    saved = create_workflow(api, {"name": "slow", "steps": [bash_task("nap", "sleep 30")]})
    run_id = start_run(api, saved["id"])["id"]
    run = wait_for(api, run_id, {"running"})
    while not run["steps"] and not api.get("/v1/runs", params={"type": "task"}).json()["data"]:
        time.sleep(0.02)
        run = api.get(f"/v1/runs/{run_id}").json()
    task_run = api.get("/v1/runs", params={"type": "task"}).json()["data"][0]
    assert api.post(f"/v1/runs/{run_id}/cancel").json()["status"] == "cancelled"
    started = time.monotonic()
    events = read_all(api, task_run["id"])
    assert time.monotonic() - started < 5
    assert events[0][1] == "status"


@pytest.mark.parametrize("path", ["/v1/runs/{id}/events", "/v1/workflows/runs/{id}/events"])
def test_both_paths_stream(api: httpx.Client, path: str) -> None:
    """The brief's and the reference's event paths stream the same log."""
    saved = create_workflow(api, tasks_workflow(1, "true"))
    run_id = wait_for(api, start_run(api, saved["id"])["id"])["id"]
    with connect_sse(api, "GET", path.format(id=run_id)) as source:
        kinds = [event.event for event in source.iter_sse()]
    assert kinds[0] == "status"
    assert kinds[-1] == "done"
