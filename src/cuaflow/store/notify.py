"""PostgreSQL LISTEN/NOTIFY: wake idle workers and live event streams in every process.

Two channels carry news between processes that share one PostgreSQL database:

- ``cuaflow_runs``, payload a run id: the run became runnable (it was
  created, resumed, or one of its timers fired). Idle workers claim at once
  instead of at their next poll.
- ``cuaflow_events``, payload ``<run id>:<last seq>``: a transaction appended
  events to the run, up to that seq. Event streams on every API replica read
  at once instead of at their next poll.

The senders (:func:`notify_runs_ready`, :func:`notify_events`) run inside the
writing transaction, so PostgreSQL delivers a notification only when, and
right after, the write commits, and never for a rolled-back one. On SQLite
they do nothing: one process's wake-ups are in memory, other processes poll.

:func:`listen` subscribes callbacks. Every subscriber of a process (on one
event loop and one database) shares one dedicated connection, which
reconnects with backoff when it breaks and tells subscribers through
``on_connect`` that notifications may have been missed meanwhile.
Notifications are hints: a lost one delays work until the next poll, it never
loses it, because the rows in the database stay the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

RUNS_CHANNEL = "cuaflow_runs"
EVENTS_CHANNEL = "cuaflow_events"
# How long the listener waits for a notification before it checks that the
# connection still answers: a silently dropped connection is noticed this late.
HEALTH_CHECK_SECONDS = 5.0
_MAX_BACKOFF_SECONDS = 5.0

RunReady = Callable[[str], None]
EventsCommitted = Callable[[str, int], None]
Connected = Callable[[], None]

_SEND = sa.text(
    "SELECT pg_notify(:channel, payload) FROM unnest(CAST(:payloads AS text[])) AS payload"
)


def notify_runs_ready(conn: sa.Connection, run_ids: Iterable[str]) -> None:
    """Inside ``conn``'s transaction: announce at commit that these runs may be claimed."""
    _send(conn, RUNS_CHANNEL, sorted(set(run_ids)))


def notify_events(conn: sa.Connection, last_seqs: Iterable[tuple[str, int]]) -> None:
    """Inside ``conn``'s transaction: announce at commit that runs have events up to these seqs."""
    _send(conn, EVENTS_CHANNEL, [f"{run_id}:{seq}" for run_id, seq in last_seqs])


def _send(conn: sa.Connection, channel: str, payloads: list[str]) -> None:
    if payloads and conn.dialect.name == "postgresql":
        conn.execute(_SEND, {"channel": channel, "payloads": payloads})


def supports_notifications(url: str | URL) -> bool:
    """Whether the database at ``url`` delivers notifications (PostgreSQL does, SQLite not)."""
    return make_url(url).get_backend_name() == "postgresql"


@dataclass(eq=False)
class Listener:
    """One subscription made by :func:`listen`; :meth:`close` ends it."""

    on_run_ready: RunReady | None
    on_events: EventsCommitted | None
    on_connect: Connected | None
    _channel: _Channel

    @property
    def connected(self) -> bool:
        """Whether notifications are being received right now."""
        return self._channel.connected.is_set()

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """Return once LISTEN is active; ``TimeoutError`` if it is not within ``timeout``."""
        async with asyncio.timeout(timeout):
            await self._channel.connected.wait()

    async def close(self) -> None:
        """Stop calling this subscriber; the last one to close closes the connection."""
        await self._channel.unsubscribe(self)


def listen(
    url: str | URL,
    on_run_ready: RunReady | None = None,
    on_events: EventsCommitted | None = None,
    *,
    on_connect: Connected | None = None,
) -> Listener:
    """Call ``on_run_ready(run_id)`` and ``on_events(run_id, last_seq)`` as notifications arrive.

    Must be called on a running event loop; the callbacks run on it and must
    not block. ``on_connect()`` is called each time the connection is (re)made
    and LISTEN is active: anything announced while it was down was missed, so
    look at the database once. ``url`` is any PostgreSQL URL cuaflow accepts.
    """
    loop = asyncio.get_running_loop()
    conninfo = _conninfo(url)
    channel = _channels.get((loop, conninfo))
    if channel is None:
        channel = _channels[(loop, conninfo)] = _Channel(loop, conninfo)
    listener = Listener(on_run_ready, on_events, on_connect, channel)
    channel.subscribe(listener)
    return listener


def _conninfo(url: str | URL) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"notifications need PostgreSQL, not {parsed.get_backend_name()}")
    # libpq takes the URL without SQLAlchemy's "+driver" part.
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


class _Channel:
    """The one listening connection of an event loop and a database, and its subscribers."""

    def __init__(self, loop: asyncio.AbstractEventLoop, conninfo: str) -> None:
        self._conninfo = conninfo
        self._key = (loop, conninfo)
        self._listeners: list[Listener] = []
        self.connected = asyncio.Event()
        self._task = loop.create_task(self._listen_forever(), name="cuaflow-notify")

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)
        if self.connected.is_set() and listener.on_connect is not None:
            _call(listener.on_connect)

    async def unsubscribe(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)
        if self._listeners or _channels.get(self._key) is not self:
            return
        del _channels[self._key]
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _listen_forever(self) -> None:
        # Imported here so SQLite-only processes never load the driver.
        import psycopg  # noqa: PLC0415

        backoff = 0.1
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {RUNS_CHANNEL}")
                    await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    self.connected.set()
                    backoff = 0.1
                    for listener in list(self._listeners):
                        if listener.on_connect is not None:
                            _call(listener.on_connect)
                    await self._receive(conn)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                log.warning("listening for notifications failed (%s); reconnecting", exc)
            finally:
                self.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)

    async def _receive(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            async for note in conn.notifies(timeout=HEALTH_CHECK_SECONDS):
                self._dispatch(note.channel, note.payload)
            # No news for a while: make sure the connection is still there.
            async with asyncio.timeout(HEALTH_CHECK_SECONDS):
                await conn.execute("SELECT 1")

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == RUNS_CHANNEL:
            for listener in list(self._listeners):
                if listener.on_run_ready is not None:
                    _call(listener.on_run_ready, payload)
        elif channel == EVENTS_CHANNEL:
            run_id, _, seq = payload.rpartition(":")
            if not run_id or not seq.isdigit():
                log.warning("ignoring a malformed %s notification %r", channel, payload)
                return
            for listener in list(self._listeners):
                if listener.on_events is not None:
                    _call(listener.on_events, run_id, int(seq))


def _call(callback: Callable[..., None], *args: object) -> None:
    try:
        callback(*args)
    except Exception:  # one subscriber's bug must not stop the others' notifications
        log.exception("a notification callback failed")


_channels: dict[tuple[asyncio.AbstractEventLoop, str], _Channel] = {}
