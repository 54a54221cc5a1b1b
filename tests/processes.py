"""cuaflow processes for the multi-process tests: workers and API replicas on one database."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import sqlalchemy as sa

from cuaflow.store import runs as store
from tests.postgres_server import free_port


def start_worker(
    db_url: str,
    data_dir: Path,
    log: Path,
    *,
    concurrency: int = 1000,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """A ``cuaflow worker`` process in a session of its own (so its shells die with it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "cuaflow", "worker", "--concurrency", str(concurrency)],
        env={
            **os.environ,
            "CUAFLOW_DATABASE_URL": db_url,
            "CUAFLOW_DATA_DIR": str(data_dir),
            "CUAFLOW_LEASE_SECONDS": "2",
            **(env or {}),
        },
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


class Replica:
    """A ``cuaflow serve`` process on a free port."""

    def __init__(self, db_url: str, data_dir: Path, log: Path, *, worker: bool, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "cuaflow", "serve", "--port", str(self.port)]
        if not worker:
            command.append("--no-worker")
        self.process = subprocess.Popen(
            command,
            env={
                **os.environ,
                "CUAFLOW_DATABASE_URL": db_url,
                "CUAFLOW_DATA_DIR": str(data_dir),
                "CUAFLOW_KEY_CACHE_SECONDS": "0",
                **env,
            },
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._log = log

    def wait_ready(self, timeout: float = 30) -> None:
        """Return once ``/healthz`` answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"replica exited:\n{self._log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"replica did not start in {timeout} s:\n{self._log.read_text()}")


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process and everything it started."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str = "a condition") -> None:
    """Poll ``predicate`` every 50 ms until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def check_recovered_run(
    engine: sa.Engine, run_id: str, data_dir: Path, billed_cents: int, actions: int
) -> int:
    """Assert what must hold of a run that lived through worker crashes; return its restarts.

    The event log is gap-free; no step completed twice; each scripted action
    (one line in the run's ``effects.log``, named ``<step>[-i]:<n>``) ran once
    unless its task step visibly restarted; billing, ``spent_cents`` and
    ``steps_completed`` agree with the ``tool_call`` events exactly.
    """
    run = store.get_run(engine, run_id)
    events = store.events_after(engine, run_id, 0, limit=100_000)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), "gap in events"
    completed = [
        e["data"]["path"]
        for e in events
        if e["type"] == "step" and e["data"]["status"] == "succeeded"
    ]
    assert len(completed) == len(set(completed)), "a step completed twice"
    restarted = {
        e["data"]["step_id"]
        for e in events
        if e["type"] == "text" and "restarted" in e["data"]["message"]
    }
    counts = collections.Counter((data_dir / "runs" / run_id / "effects.log").read_text().split())
    for action, count in counts.items():
        step = action.split(":")[0].split("-")[0]
        assert count == 1 or step in restarted, f"{action} of {run_id} ran {count} times"
    tool_calls = [e for e in events if e["type"] == "tool_call"]
    assert run["spent_cents"] == billed_cents == 5 * len(tool_calls)
    assert run["steps_completed"] == len(tool_calls) >= actions
    assert len(counts) == actions
    return len(restarted)
