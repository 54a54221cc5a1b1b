"""A machine lease serves one holder at a time, waiters in arrival order."""

from __future__ import annotations

import asyncio

from cuaflow.machines.lease import MachineLease


async def test_waiters_are_served_in_arrival_order_and_told_they_wait() -> None:
    """Three tasks asking for a held lease get it one by one, first come first served."""
    lease = MachineLease()
    order: list[str] = []
    waits: list[tuple[str, int, str | None]] = []
    release_first = asyncio.Event()

    async def task(name: str) -> None:
        async def on_wait(position: int, holder: str | None) -> None:
            waits.append((name, position, holder))

        async with lease.hold(name, on_wait=on_wait):
            order.append(name)
            assert lease.holder == name
            if name == "a":
                await release_first.wait()
            await asyncio.sleep(0)

    first = asyncio.create_task(task("a"))
    await asyncio.sleep(0)
    others = [asyncio.create_task(task(name)) for name in ("b", "c")]
    for _ in range(3):
        await asyncio.sleep(0)
    assert lease.holder == "a"
    assert lease.waiting == ("b", "c")
    # A newcomer arriving just as the lease is released must not jump the queue.
    release_first.set()
    late = asyncio.create_task(task("d"))
    await asyncio.gather(first, *others, late)
    assert order == ["a", "b", "c", "d"]
    assert waits[:2] == [("b", 1, "a"), ("c", 2, "a")]
    assert lease.holder is None
    assert lease.waiting == ()


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    """A task cancelled while waiting gives up its place and the lease still passes on."""
    lease = MachineLease()
    async with lease.hold("a"):
        waiter = asyncio.create_task(lease.hold("b").__aenter__())
        await asyncio.sleep(0)
        assert lease.waiting == ("b",)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert not lease.waiting
    async with lease.hold("c"):
        assert lease.holder == "c"
