"""Leases: a machine that serves one task at a time, with waiters served in arrival order.

A desktop has one screen, one pointer and one keyboard focus, so two tasks
acting on it at once would trample each other. The engine holds the machine's
lease for the whole of a task::

    async with machine.lease.hold(run_id, on_wait=announce_wait):
        ...  # observe and act

``on_wait`` is awaited before queueing, only when the task has to wait, with
its place in the queue and the current holder, so the wait shows in the run's
events. ``asyncio.Lock`` hands the lock to its oldest waiter and lets no
newcomer jump the queue, which is the order this promises.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

WaitCallback = Callable[[int, str | None], Awaitable[None]]
"""Called with (position in the queue counting from 1, current holder) before waiting."""


class MachineLease:
    """One holder at a time; the others wait in the order they asked."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._holder: str | None = None
        self._waiting: list[str] = []

    @property
    def holder(self) -> str | None:
        """Who holds the lease now, if anyone."""
        return self._holder

    @property
    def waiting(self) -> tuple[str, ...]:
        """Who is waiting, first in line first."""
        return tuple(self._waiting)

    @asynccontextmanager
    async def hold(
        self, holder: str, *, on_wait: WaitCallback | None = None
    ) -> AsyncIterator[None]:
        """Hold the lease for the body of the ``async with``, waiting in line if it is taken."""
        if on_wait is not None and (self._lock.locked() or self._waiting):
            await on_wait(len(self._waiting) + 1, self._holder)
        self._waiting.append(holder)
        try:
            await self._lock.acquire()
        finally:
            self._waiting.remove(holder)
        self._holder = holder
        try:
            yield
        finally:
            self._holder = None
            self._lock.release()
