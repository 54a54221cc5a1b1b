"""HTTP API benchmark: run creations under a steady offered load, and 1,000 live event streams.

Starts ``cuaflow serve`` (uvicorn, worker in the same process, SQLite file in a
temp directory) and prints:

(a) ``POST /v1/workflows/{id}/runs`` at a fixed offered rate (open loop: each
    request is sent at its scheduled time whatever earlier ones are doing, and
    its latency counts from that time, so a slow server cannot hide queueing):
    achieved creations per second, latency p50 / p99, errors. The runs are
    executed by the server's worker meanwhile (a one-step workflow each).
(b) N concurrent ``GET /v1/runs/{id}/events`` streams on one server process,
    each following its own run, which performs an agent step (a ``wait``
    action) every ``--tick`` seconds: events delivered per second and the
    latency from an event's commit (its ``created_at`` in the events table,
    stamped just before the commit) to its arrival at the client, p50 / p99.
    The stream clients are raw asyncio sockets, so the client side costs little.

Run with ``.venv/bin/python bench/api_bench.py [--rate 500] [--streams 1000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from cuaflow.store import tables
from cuaflow.store.database import open_database
from cuaflow.store.keys import create_key

QUICK = {"name": "quick", "steps": [{"id": "done", "type": "succeed", "output": {"ok": True}}]}


def ticker(ticks: int, seconds: float) -> dict[str, Any]:
    """A workflow that performs one agent step (a wait) every ``seconds``, ``ticks`` times.

    It first waits ``inputs.offset`` seconds, so runs started together tick at
    different moments (a steady flow of events rather than one burst a tick).
    """
    offset = {"id": "offset", "type": "task", "task": "offset",
              "actions": [{"type": "wait", "seconds": "{{inputs.offset}}"}]}  # fmt: skip
    step = {"id": "tick", "type": "task", "task": "tick",
            "actions": [{"type": "wait", "seconds": seconds}]}  # fmt: skip
    loop = {"id": "ticks", "type": "loop", "count": ticks, "body": [step]}
    return {"name": "ticker", "steps": [offset, loop]}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``cuaflow serve`` in a subprocess on a fresh database."""

    def __init__(
        self,
        root: Path,
        *,
        worker: bool,
        separate_worker: bool = False,
        database_url: str | None = None,
    ) -> None:
        self.root = root
        self.url = database_url or f"sqlite:///{root / 'cuaflow.db'}"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        engine = open_database(self.url)
        self.key, _ = create_key(engine, tenant_id="bench")
        self.engine = engine
        # A script to start instead of `-m cuaflow` (one that wraps the CLI in a profiler, say).
        launcher = os.environ.get("CUAFLOW_BENCH_LAUNCHER", "-m cuaflow").split()
        command = [sys.executable, *launcher, "serve", "--port", str(self.port),
                   "--database-url", self.url] + ([] if worker else ["--no-worker"])  # fmt: skip
        env = os.environ | {"CUAFLOW_DATA_DIR": str(root)}
        self.log = (root / "server.log").open("wb")
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.worker: subprocess.Popen[bytes] | None = None
        if separate_worker:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "cuaflow", "worker"],
                env=env | {"CUAFLOW_DATABASE_URL": self.url},
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base}/healthz", timeout=0.5).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError("the server did not start")

    def stop(self) -> None:
        """Stop the server (and its separate worker)."""
        for process in (self.process, self.worker):
            if process is not None:
                process.terminate()
                process.wait(15)
        self.engine.dispose()


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` fall."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Connections:
    """Keep-alive HTTP/1.1 connections for small JSON requests (a lean client, to load the server
    rather than the benchmark's own CPU)."""

    def __init__(self, port: int, key: str, size: int) -> None:
        self.port = port
        self.key = key
        self.size = size
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

    async def open(self) -> None:
        """Open the pool's connections."""
        for _ in range(self.size):
            self.idle.put_nowait(await asyncio.open_connection("127.0.0.1", self.port))

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """POST ``body``; the status and the answer's body."""
        reader, writer = await self.idle.get()
        try:
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: bench\r\nX-API-Key: {self.key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) != b"\r\n":
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            return status, await reader.readexactly(length)
        finally:
            self.idle.put_nowait((reader, writer))


async def creations(server: Server, rate: float, seconds: float, label: str) -> None:
    """(a): POST runs at ``rate`` per second for ``seconds``; print throughput and latency."""
    async with httpx.AsyncClient(base_url=server.base, headers={"X-API-Key": server.key}) as client:
        workflow = (await client.post("/v1/workflows", json=QUICK)).json()
    path = f"/v1/workflows/{workflow['id']}/runs"
    pool = Connections(server.port, server.key, 64)
    await pool.open()
    body = b'{"metadata": {"bench": true}}'
    for _ in range(300):  # warm up connections and caches
        await pool.post(path, body)
    latencies: list[float] = []
    errors = 0

    async def one(scheduled: float) -> None:
        nonlocal errors
        try:
            status, _ = await pool.post(path, body)
        except (OSError, ValueError, asyncio.IncompleteReadError):
            status = 0
        latencies.append(time.perf_counter() - scheduled)
        errors += status != 200

    total = int(rate * seconds)
    start = time.perf_counter()
    tasks = []
    for index in range(total):
        scheduled = start + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    ms = [value * 1000 for value in latencies]
    print(f"(a) [{label}] offered {rate:.0f} run creations/s for {seconds:.0f} s: "
          f"{total / elapsed:.0f}/s achieved, p50 {percentile(ms, 0.5):.1f} ms, "
          f"p99 {percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms, errors {errors}")  # fmt: skip


async def _open_stream(
    port: int, key: str, run_id: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /v1/runs/{run_id}/events HTTP/1.1\r\nHost: bench\r\nX-API-Key: {key}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"stream of {run_id} answered {status!r}")
    while (await reader.readline()) not in (b"\r\n", b""):
        pass  # response headers
    # The writer must stay referenced: a collected StreamWriter closes the connection.
    return reader, writer


async def follow(
    port: int, key: str, run_id: str, arrivals: list[tuple[str, int, float]], stop: asyncio.Event
) -> None:
    """Read one run's stream (chunked transfer) and note when each event id arrives."""
    reader, writer = await _open_stream(port, key, run_id)
    pending = b""
    while not stop.is_set() and not writer.is_closing():
        size_line = await reader.readline()
        if not size_line:
            return
        size = int(size_line.strip() or b"0", 16)
        if size == 0:
            return
        chunk = await reader.readexactly(size + 2)
        now = time.time()
        pending += chunk[:-2]
        *frames, pending = pending.split(b"\n\n")
        for frame in frames:
            for line in frame.split(b"\n"):
                if line.startswith(b"id: "):
                    arrivals.append((run_id, int(line[4:]), now))


async def streams(server: Server, count: int, seconds: float, tick: float) -> None:
    """(b): ``count`` streams for ``seconds``; print delivery rate and commit-to-client latency."""
    headers = {"X-API-Key": server.key}
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=server.base, headers=headers, limits=limits,
                                 timeout=60) as client:  # fmt: skip
        ticks = int((seconds + 30) / tick)
        workflow = (await client.post("/v1/workflows", json=ticker(ticks, tick))).json()
        path = f"/v1/workflows/{workflow['id']}/runs"
        semaphore = asyncio.Semaphore(50)

        async def start(index: int) -> str:
            body = {"inputs": {"offset": round(tick * index / count, 3)}}
            headers = {"Idempotency-Key": f"bench-{index}"}
            async with semaphore:
                for _ in range(3):  # a kept-alive connection the server just closed
                    with contextlib.suppress(httpx.TransportError):
                        answer = await client.post(path, json=body, headers=headers)
                        return str(answer.json()["id"])
                raise RuntimeError("could not start a run")

        run_ids = await asyncio.gather(*(start(index) for index in range(count)))
        arrivals: list[tuple[str, int, float]] = []
        stop = asyncio.Event()
        followers = [
            asyncio.create_task(follow(server.port, server.key, run_id, arrivals, stop))
            for run_id in run_ids
        ]
        await asyncio.sleep(5)  # every stream connected and replayed its backlog
        open_streams = sum(not task.done() for task in followers)
        measure_from = time.time()
        await asyncio.sleep(seconds)
        measure_to = time.time()
        stop.set()
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
    events = tables.events
    with server.engine.connect() as conn:
        committed = {
            (row.run_id, row.seq): row.created_at
            for row in conn.execute(
                sa.select(events.c.run_id, events.c.seq, events.c.created_at).where(
                    events.c.created_at >= measure_from, events.c.created_at < measure_to
                )
            )
        }
    wanted = set(run_ids)
    latencies = [
        (arrived - committed[(run_id, seq)]) * 1000
        for run_id, seq, arrived in arrivals
        if (run_id, seq) in committed
    ]
    expected = sum(1 for run_id, _ in committed if run_id in wanted)
    print(f"(b) {open_streams} of {count} streams open, one agent step per run every {tick:g} s: "
          f"{len(latencies) / seconds:.0f} events/s delivered ({len(latencies)} of {expected} "
          f"committed in the window), commit-to-client p50 {statistics.median(latencies):.1f} ms, "
          f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms")  # fmt: skip


def main() -> None:
    """Parse arguments, run both parts, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=float, default=500, help="offered creations per second")
    parser.add_argument("--seconds", type=float, default=10, help="length of each measurement")
    parser.add_argument("--streams", type=int, default=1000, help="concurrent event streams")
    parser.add_argument("--tick", type=float, default=2.0, help="seconds between agent steps")
    parser.add_argument(
        "--worker",
        choices=("in-process", "separate", "none"),
        default="in-process",
        help="(a): who executes the created runs: the server's own worker (default), "
        "a separate `cuaflow worker` process, or nobody (the API alone)",
    )
    parser.add_argument("--only", choices=("a", "b"), help="run one part")
    parser.add_argument(
        "--database-url",
        help="an empty database to use instead of a fresh SQLite file (e.g. PostgreSQL)",
    )
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: PLC0415  # optional: a faster loop for the client side

        uvloop.install()
    print(f"cuaflow API benchmark on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        if args.only != "b":
            root = Path(tmp) / "a"
            root.mkdir()
            server = Server(
                root,
                worker=args.worker == "in-process",
                separate_worker=args.worker == "separate",
                database_url=args.database_url,
            )
            try:
                label = {"in-process": "worker in the server", "separate": "separate worker",
                         "none": "API only"}[args.worker]  # fmt: skip
                asyncio.run(creations(server, args.rate, args.seconds, label))
            finally:
                server.stop()
        if args.only != "a":
            root = Path(tmp) / "b"
            root.mkdir()
            server = Server(root, worker=True, database_url=args.database_url)
            try:
                asyncio.run(streams(server, args.streams, args.seconds, args.tick))
            finally:
                server.stop()


if __name__ == "__main__":
    main()
