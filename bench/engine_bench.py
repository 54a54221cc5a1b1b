"""Engine benchmark: per-step time, durable steps per second, and runs waiting for humans.

Prints three figures measured in one process on a fresh SQLite file:

(a) a 10-step control-flow workflow run alone: engine time per step (p50, p99),
    from loading the run to its final commit, divided by its steps;
(b) 500 concurrent runs of it on one worker: durable steps per second
    (every step journalled and committed, with group commit across runs);
(c) 10,000 runs waiting for a human: the process's memory once they all wait,
    and the time from an answer to the run finishing its next step (p50, p99).

Run with ``make bench`` or ``.venv/bin/python bench/engine_bench.py [--waiting N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cuaflow.dsl.parse import parse_workflow, workflow_document
from cuaflow.engine.runner import drive_run
from cuaflow.engine.start import RunOptions, start_workflow_run
from cuaflow.store import runs as store
from cuaflow.store.database import open_database
from cuaflow.store.read_engine import read_engine
from cuaflow.store.writer import Event, UnitOfWork, Writer, apply_units
from cuaflow.worker.worker import Worker

TEN_STEPS: dict[str, Any] = {
    "name": "ten-steps",
    "steps": [
        {
            "id": "s1",
            "type": "assert",
            "condition": {"op": "eq", "left": "{{inputs.n}}", "right": 1},
        },
        {
            "id": "s2",
            "type": "if",
            "condition": {"op": "gt", "left": "{{inputs.n}}", "right": 0},
            "then": [
                {
                    "id": "s3",
                    "type": "assert",
                    "condition": {"op": "truthy", "value": "{{s1.passed}}"},
                }
            ],
        },
        {
            "id": "s4",
            "type": "loop",
            "count": 2,
            "body": [
                {
                    "id": "s5",
                    "type": "assert",
                    "condition": {"op": "exists", "value": "{{vars.iteration}}"},
                }
            ],
        },
        {
            "id": "s6",
            "type": "assert",
            "condition": {"op": "eq", "left": "{{s4.iterations}}", "right": 2},
        },
        {
            "id": "s7",
            "type": "retry",
            "max_attempts": 2,
            "body": [
                {"id": "s8", "type": "assert", "condition": {"op": "ne", "left": "a", "right": "b"}}
            ],
        },
        {"id": "s9", "type": "succeed", "output": {"branch": "{{s2.branch}}"}},
    ],
}
# Journalled step instances of one run: s1 s3 s2 s5 s5 s4 s6 s8 s7 s9.
STEPS_PER_RUN = 10
WAITING: dict[str, Any] = {
    "name": "waiting",
    "steps": [
        {"id": "gate", "type": "human_approval", "message": "ok?"},
        {
            "id": "after",
            "type": "assert",
            "condition": {"op": "truthy", "value": "{{gate.approved}}"},
        },
    ],
}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def bulk_create(engine: sa.Engine, workflow: dict[str, Any], count: int) -> list[str]:
    """Insert ``count`` queued runs in a few transactions (start_workflow_run does one each)."""
    template = start_workflow_run(engine, parse_workflow(workflow), RunOptions(inputs={"n": 1}))
    ids = [template["id"]]
    definition = workflow_document(parse_workflow(workflow))
    for offset in range(0, count - 1, 1000):
        unit = UnitOfWork()
        for _ in range(min(1000, count - 1 - offset)):
            run_id = store.new_id("wfr_")
            unit.new_runs.append({**template, "id": run_id, "definition": definition})
            unit.events.append(Event(run_id, "status", {"status": "queued"}))
            ids.append(run_id)
        with engine.begin() as conn:
            apply_units(conn, [unit])
    return ids


async def single_run_step_times(engine: sa.Engine, data_dir: Path, runs: int) -> list[float]:
    """Engine milliseconds per step for ``runs`` sequential runs of the 10-step workflow."""
    writer = Writer(engine)
    writer.start()
    per_step = []
    for run_id in bulk_create(engine, TEN_STEPS, runs):
        started = time.perf_counter()
        outcome = await drive_run(engine, writer, run_id, data_dir=data_dir)
        per_step.append((time.perf_counter() - started) * 1000 / STEPS_PER_RUN)
        assert outcome == "finished"
    await writer.close()
    return per_step


async def concurrent_throughput(engine: sa.Engine, data_dir: Path, runs: int) -> tuple[float, int]:
    """Durable steps per second for ``runs`` concurrent runs on one worker, and batches used."""
    ids = bulk_create(engine, TEN_STEPS, runs)
    worker = Worker(engine, data_dir=data_dir, concurrency=runs, poll_seconds=0.01)
    started = time.perf_counter()
    await worker.start()
    await wait_all(engine, ids, "succeeded")
    elapsed = time.perf_counter() - started
    batches = worker.writer.batches
    await worker.stop()
    return runs * STEPS_PER_RUN / elapsed, batches


async def wait_all(engine: sa.Engine, ids: list[str], status: str) -> None:
    """Wait until every run in ``ids`` has ``status``."""
    runs = sa.table("runs", sa.column("id"), sa.column("status"))
    query = (
        sa.select(sa.func.count())
        .select_from(runs)
        .where(runs.c.status == status, runs.c.id.in_(sa.bindparam("ids", expanding=True)))
    )
    reader = read_engine(engine)  # counting must not queue on the writers' lock
    while True:
        with reader.connect() as conn:
            done = conn.execute(query, {"ids": ids}).scalar_one()
        if done == len(ids):
            return
        await asyncio.sleep(0.05)


def rss_mb() -> float:
    """Resident memory of this process now, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def waiting_runs(
    engine: sa.Engine, data_dir: Path, runs: int, answers: int
) -> tuple[float, list[float]]:
    """Memory with ``runs`` runs awaiting a human, and answer-to-finished latencies (ms)."""
    ids = bulk_create(engine, WAITING, runs)
    worker = Worker(engine, data_dir=data_dir, concurrency=1000, poll_seconds=0.01)
    await worker.start()
    await wait_all(engine, ids, "awaiting_human")
    memory = rss_mb()
    latencies = []
    for run_id in ids[:answers]:
        started = time.perf_counter()
        store.resume_run(engine, run_id, approved=True)
        worker.wake()
        while store.get_run(engine, run_id)["status"] != "succeeded":
            await asyncio.sleep(0.001)
        latencies.append((time.perf_counter() - started) * 1000)
    await worker.stop()
    return memory, latencies


async def main() -> None:
    """Run the three measurements and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=300, help="sequential runs for (a)")
    parser.add_argument("--concurrent", type=int, default=500, help="concurrent runs for (b)")
    parser.add_argument("--waiting", type=int, default=10_000, help="waiting runs for (c)")
    parser.add_argument("--answers", type=int, default=200, help="answers timed in (c)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        engine = open_database(f"sqlite:///{base / 'a.db'}")
        per_step = await single_run_step_times(engine, base, args.single)
        print(
            f"(a) 10-step control-flow run alone: engine time per step "
            f"p50 {percentile(per_step, 50):.3f} ms, p99 {percentile(per_step, 99):.3f} ms "
            f"({args.single} runs)"
        )
        engine = open_database(f"sqlite:///{base / 'b.db'}")
        rate, batches = await concurrent_throughput(engine, base, args.concurrent)
        print(
            f"(b) {args.concurrent} concurrent runs: {rate:,.0f} durable steps/s "
            f"({args.concurrent * STEPS_PER_RUN} steps in {batches} commits)"
        )
        engine = open_database(f"sqlite:///{base / 'c.db'}")
        memory, latencies = await waiting_runs(engine, base, args.waiting, args.answers)
        print(
            f"(c) {args.waiting:,} runs awaiting a human: process memory {memory:.0f} MB; "
            f"answer to run finished p50 {percentile(latencies, 50):.1f} ms, "
            f"p99 {percentile(latencies, 99):.1f} ms ({args.answers} answers)"
        )


if __name__ == "__main__":
    asyncio.run(main())
