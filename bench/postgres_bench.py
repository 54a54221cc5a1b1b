"""PostgreSQL benchmark: durable steps/s with 1, 2 and 4 workers, and cross-replica event latency.

Prints two figures on a PostgreSQL server with its default, durable settings
(``fsync`` and ``synchronous_commit`` on): a throwaway one this script starts
(Debian's binaries, a temp dir, a free loopback port), or ``--url``.

(a) Throughput: for 1, 2 and 4 ``cuaflow worker`` processes, the 10-step
    control-flow workflow of ``engine_bench.py`` run many times at once on a
    fresh database: durable steps per second from the moment the runs become
    claimable to the last run's finish, with the transactions committed and
    the CPU the workers and the database used meanwhile (share of all cores),
    which shows where it saturates, and the steps one core of PostgreSQL
    would carry at the measured cost per step.
(b) Event latency across processes: a worker process executes runs whose
    steps take a little while; an API replica (``cuaflow serve --no-worker``)
    streams their events over SSE to clients in this process, and this
    process also listens for the notifications itself. Latency is from the
    event's ``created_at`` (taken in the writing transaction, before commit)
    to its arrival; p50 and p99, at a light and a heavier load.

Run with ``make bench-postgres`` or ``.venv/bin/python bench/postgres_bench.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import sqlalchemy as sa
from httpx_sse import aconnect_sse
from sqlalchemy.engine import make_url

from cuaflow.store import tables
from cuaflow.store.database import open_database
from cuaflow.store.keys import create_key
from cuaflow.store.notify import listen, notify_runs_ready
from engine_bench import STEPS_PER_RUN, TEN_STEPS, bulk_create, percentile

# The throwaway server lives with the tests; this script runs from bench/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.postgres_server import PostgresServer, free_port

WORKER_COUNTS = (1, 2, 4)
LATENCY_WORKFLOW: dict[str, Any] = {
    "name": "latency",
    "steps": [
        {
            "id": f"t{i}",
            "type": "task",
            "task": f"step {i}",
            "actions": [{"type": "bash", "command": "sleep 0.05"}],
        }
        for i in range(8)
    ],
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@contextmanager
def postgres(url: str | None) -> Iterator[str]:
    """The maintenance URL of ``url``'s server, or of a durable throwaway server."""
    if url:
        yield url
        return
    server = PostgresServer(durable=True)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def fresh_database(admin_url: str, name: str) -> str:
    """A new empty database ``name`` (dropped first if it exists); its SQLAlchemy URL."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    database_url = make_url(admin_url).set(drivername="postgresql+psycopg", database=name)
    return database_url.render_as_string(hide_password=False)


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU seconds the live processes among ``pids`` have used."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def postgres_pids() -> list[int]:
    """Every PostgreSQL server process on this machine (the throwaway server's, here)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def start_workers(count: int, db_url: str, data_dir: Path, concurrency: int) -> list[Any]:
    """``count`` worker processes, logging to ``data_dir``."""
    env = {**os.environ, "CUAFLOW_DATABASE_URL": db_url, "CUAFLOW_DATA_DIR": str(data_dir)}
    log = (data_dir / "workers.log").open("ab")
    return [
        subprocess.Popen(
            [sys.executable, "-m", "cuaflow", "worker", "--concurrency", str(concurrency)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for _ in range(count)
    ]


def stop(processes: list[Any]) -> None:
    """Terminate and reap ``processes``."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(30)


def wait_listening(engine: sa.Engine, count: int, timeout: float = 60) -> None:
    """Wait until ``count`` processes hold a LISTEN connection to the database (they are up)."""
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND query LIKE 'LISTEN%'"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(query).scalar_one() >= count:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{count} processes did not start listening in {timeout} s")


def commits(engine: sa.Engine) -> int:
    """Transactions committed in the database so far (PostgreSQL's own statistics)."""
    query = sa.text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
        return int(conn.execute(query).scalar_one())


def throughput(admin_url: str, workers: int, runs: int, base: Path) -> dict[str, float]:
    """Durable steps/s of ``runs`` 10-step runs on ``workers`` worker processes, and CPU shares."""
    db_url = fresh_database(admin_url, f"bench_throughput_{workers}")
    engine = open_database(db_url)
    runs_table = tables.runs
    ids = bulk_create(engine, TEN_STEPS, runs)
    with engine.begin() as conn:
        # Held back until every worker is up, so all of them start together.
        conn.execute(runs_table.update().values(runnable_at=None))
    data_dir = base / f"throughput-{workers}"
    data_dir.mkdir()
    processes = start_workers(workers, db_url, data_dir, concurrency=max(50, runs // workers))
    try:
        wait_listening(engine, workers)
        pg_pids = postgres_pids()
        worker_pids = [p.pid for p in processes]
        cpu_before = cpu_seconds(pg_pids), cpu_seconds(worker_pids)
        commits_before = commits(engine)
        started = time.time()
        with engine.begin() as conn:
            conn.execute(runs_table.update().values(runnable_at=started))
            notify_runs_ready(conn, ids[:1])
        done = sa.select(sa.func.count()).where(runs_table.c.status == "succeeded")
        while True:
            with engine.connect() as conn:
                if conn.execute(done).scalar_one() == runs:
                    break
            time.sleep(0.05)
        wall = time.time() - started
        pg_cpu = cpu_seconds(postgres_pids()) - cpu_before[0]
        worker_cpu = cpu_seconds(worker_pids) - cpu_before[1]
        # Statistics reach the view with a delay of up to half a second.
        time.sleep(1)
        committed = commits(engine) - commits_before
        with engine.connect() as conn:
            finished = conn.execute(sa.select(sa.func.max(runs_table.c.finished_at))).scalar_one()
    finally:
        stop(processes)
        engine.dispose()
    elapsed = float(finished) - started
    cores = os.cpu_count() or 1
    return {
        "steps_per_second": runs * STEPS_PER_RUN / elapsed,
        "seconds": elapsed,
        "postgres_cpu": pg_cpu / wall / cores,
        "workers_cpu": worker_cpu / wall / cores,
        "commits_per_second": committed / elapsed,
        "steps_per_postgres_core": runs * STEPS_PER_RUN / pg_cpu if pg_cpu else float("inf"),
    }


async def latency(
    admin_url: str, runs: int, base: Path, name: str
) -> tuple[list[float], list[float]]:
    """Milliseconds from event creation to arrival: over SSE from a replica, and by NOTIFY."""
    db_url = fresh_database(admin_url, f"bench_{name}")
    engine = open_database(db_url)
    key, _ = create_key(engine)
    data_dir = base / name
    data_dir.mkdir()
    port = free_port()
    env = {**os.environ, "CUAFLOW_DATABASE_URL": db_url, "CUAFLOW_DATA_DIR": str(data_dir)}
    log = (data_dir / "replica.log").open("ab")
    replica = subprocess.Popen(
        [sys.executable, "-m", "cuaflow", "serve", "--no-worker", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    workers = start_workers(1, db_url, data_dir, concurrency=1000)
    notified: dict[tuple[str, int], float] = {}
    streamed: dict[tuple[str, int], float] = {}

    def heard(run_id: str, seq: int) -> None:
        notified.setdefault((run_id, seq), time.time())

    listener = listen(engine.url, on_events=heard)
    try:
        await listener.wait_connected()
        wait_listening(engine, 3)  # the replica, the worker and this process
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=60
        ) as client:
            saved = (await client.post("/v1/workflows", json=LATENCY_WORKFLOW)).json()
            run_ids = []
            for _ in range(runs):
                answer = await client.post(f"/v1/workflows/{saved['id']}/runs", json={})
                run_ids.append(answer.json()["id"])

            async def follow(run_id: str) -> None:
                async with aconnect_sse(client, "GET", f"/v1/runs/{run_id}/events") as source:
                    async for event in source.aiter_sse():
                        streamed[(run_id, int(event.id))] = time.time()
                        if event.event == "done":
                            return

            await asyncio.gather(*(follow(run_id) for run_id in run_ids))
    finally:
        await listener.close()
        stop([replica, *workers])
    created: dict[tuple[str, int], float] = {}
    events = tables.events
    with engine.connect() as conn:
        for row in conn.execute(sa.select(events.c.run_id, events.c.seq, events.c.created_at)):
            created[(row.run_id, row.seq)] = row.created_at
    engine.dispose()
    # Events that were already written when their stream connected were replayed, not pushed.
    cutoff = {run_id: min(t for (r, _), t in streamed.items() if r == run_id) for run_id in run_ids}
    sse = [
        (arrived - created[key]) * 1000
        for key, arrived in streamed.items()
        if created[key] > cutoff[key[0]]
    ]
    by_notify = [(arrived - created[key]) * 1000 for key, arrived in notified.items()]
    return sse, by_notify


async def main() -> None:
    """Measure and print both figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a PostgreSQL maintenance URL (default: start a server)")
    parser.add_argument("--runs", type=int, default=2000, help="runs per throughput measurement")
    parser.add_argument(
        "--latency-runs",
        type=int,
        nargs="+",
        default=[10, 40],
        help="concurrent runs streamed in (b), one measurement each",
    )
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPU cores; workers and PostgreSQL share them")
    with postgres(args.url) as admin_url, tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        results = {n: throughput(admin_url, n, args.runs, base) for n in WORKER_COUNTS}
        for workers, result in results.items():
            print(
                f"(a) {workers} worker process{'es' if workers > 1 else ''}: "
                f"{result['steps_per_second']:,.0f} durable steps/s "
                f"({args.runs * STEPS_PER_RUN:,} steps in {result['seconds']:.1f} s; "
                f"{result['commits_per_second']:,.0f} commits/s; "
                f"CPU of all cores: workers {result['workers_cpu']:.0%}, "
                f"PostgreSQL {result['postgres_cpu']:.0%}; "
                f"PostgreSQL CPU per step would carry "
                f"{result['steps_per_postgres_core']:,.0f} steps/s per core)"
            )
        for index, runs in enumerate(args.latency_runs):
            sse, by_notify = await latency(admin_url, runs, base, f"latency_{index}")
            print(
                f"(b) {runs} runs at once: event created on a worker -> SSE client of "
                f"another replica p50 {percentile(sse, 50):.1f} ms, "
                f"p99 {percentile(sse, 99):.1f} ms ({len(sse)} live events); "
                f"-> NOTIFY listener in a third process p50 {percentile(by_notify, 50):.1f} ms, "
                f"p99 {percentile(by_notify, 99):.1f} ms"
            )


if __name__ == "__main__":
    asyncio.run(main())
