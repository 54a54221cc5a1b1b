"""cuaflow processes for the multi-process tests: workers and API replicas on one database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

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
