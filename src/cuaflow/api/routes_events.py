"""``GET /v1/runs/{id}/events``: a run's durable event log as Server-Sent Events.

Each event is one frame ``id: <seq>\\nevent: <type>\\ndata: <json>\\n\\n``. The
stream replays the log after the cursor (``?after=<seq>``, else the
``Last-Event-ID`` header, else from the start), then follows it live, sends
``: keepalive`` comment lines while idle, and closes after the ``done`` event. A run
that already finished replays and closes (also one whose log has no ``done``).
Events of a workflow run's task steps carry their ``step_id`` in ``data``.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from cuaflow.api.auth import Principal, require
from cuaflow.api.errors import ApiError, validation_error
from cuaflow.api.event_hub import READ_LIMIT, EventHub, Subscription
from cuaflow.api.serializers import event_data
from cuaflow.api.services import Services, services
from cuaflow.errors import Issue, NotFound
from cuaflow.store import runs as store

Deps = Annotated[Services, Depends(services)]
RunId = Annotated[str, Path(max_length=100, description="A run id (wfr_... or run_...).")]
_AFTER = "Replay the events after this seq (wins over Last-Event-ID)."
_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
        "description": "Frames `id: <seq>`, `event: <type>`, `data: <json>`; "
        "`: keepalive` comments while idle; the stream ends after `done`.",
    }
}

# A comment line without the blank line that would end an event: some clients
# (httpx-sse among them) report an empty event for a comment followed by one.
KEEPALIVE = b": keepalive\n"

router = APIRouter(tags=["events"])


def _register(prefix: str, scope: str) -> None:
    async def run_events(
        request: Request,
        run_id: RunId,
        svc: Deps,
        who: Annotated[Principal, Depends(require(scope))],
        after: Annotated[int | None, Query(ge=0, le=2**53, description=_AFTER)] = None,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
    ) -> EventSourceResponse:
        """Stream the run's events: replay after the cursor, then live, until ``done``."""
        cursor = after if after is not None else _header_cursor(last_event_id)
        try:
            row = await asyncio.to_thread(store.get_run, svc.reads, run_id, who.tenant_id)
        except NotFound:
            raise ApiError(404, "RUN_NOT_FOUND", f"no run with id '{run_id}'") from None
        frames = stream_events(svc, run_id, cursor, finished=row["status"] in store.FINISHED)
        return EventSourceResponse(
            frames,
            # The stream sends its own keepalives (see KEEPALIVE), only when idle.
            ping=0,
            sep="\n",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    router.add_api_route(
        f"{prefix}/{{run_id}}/events",
        run_events,
        methods=["GET"],
        summary="Stream a run's events (SSE)",
        responses=_STREAM,
        response_class=EventSourceResponse,
        name=f"events {prefix}",
    )


def _header_cursor(value: str | None) -> int:
    if value is None or not value.strip():
        return 0
    try:
        cursor = int(value.strip())
    except ValueError:
        cursor = -1
    if cursor < 0:
        raise validation_error(
            [Issue(("header", "Last-Event-ID"), "must be the seq (a whole number) of an event")]
        )
    return cursor


async def stream_events(
    svc: Services, run_id: str, cursor: int, *, finished: bool
) -> AsyncIterator[ServerSentEvent | bytes]:
    """The run's events after ``cursor`` as SSE frames, replayed then live, until ``done``."""
    hub = svc.hub
    sub = hub.subscribe(run_id)
    sub.finished = finished
    try:
        while True:
            sub.wake.clear()
            events = await hub.read(run_id, cursor)
            for event in events:
                cursor = int(event["seq"])
                yield _frame(event)
                if event["type"] == "done":
                    return
            if len(events) >= READ_LIMIT:
                continue
            if sub.finished:
                return
            if not await _wait(hub, sub, cursor, svc.settings.keepalive_seconds or 15.0):
                yield KEEPALIVE
    finally:
        hub.unsubscribe(sub)


async def _wait(hub: EventHub, sub: Subscription, cursor: int, idle: float) -> bool:
    """True once the hub says there may be events past ``cursor``; False after ``idle`` s."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sub.wake.wait(), idle)
        if not sub.wake.is_set():
            return False
        known = hub.known_seq(sub.run_id)
        if known is None or known > cursor or sub.finished:
            return True
        sub.wake.clear()


def _frame(event: dict[str, Any]) -> ServerSentEvent:
    data = json.dumps(event_data(event), separators=(",", ":"), ensure_ascii=False)
    return ServerSentEvent(data=data, event=str(event["type"]), id=str(event["seq"]), sep="\n")


_register("/v1/runs", "runs:read")
_register("/v1/workflows/runs", "workflows:read")
