"""A real ``cuaflow serve`` (uvicorn, worker in process) on a free port and a temp SQLite file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from cuaflow.store.database import open_database
from cuaflow.store.keys import create_key
from tests.db import database_url

SERVER_ENV = {
    "CUAFLOW_SSE_KEEPALIVE_SECONDS": "0.5",
    "CUAFLOW_SSE_POLL_SECONDS": "0.05",
    "CUAFLOW_KEY_CACHE_SECONDS": "0",
    "CUAFLOW_MAX_BODY_BYTES": "200000",
    # Webhook tests point at 127.0.0.1, which the SSRF guard refuses by default.
    "CUAFLOW_WEBHOOK_ALLOW_PRIVATE": "1",
}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A ``cuaflow serve`` subprocess and how to reach it."""

    data_dir: Path
    database_url: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    extra_args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it answers."""
        env = os.environ | SERVER_ENV | {"CUAFLOW_DATA_DIR": str(self.data_dir)}
        log = (self.data_dir / "server.log").open("ab")
        command = [sys.executable, "-m", "cuaflow", "serve", "--port", str(self.port)]
        command += ["--database-url", self.database_url, *self.extra_args]
        self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {(self.data_dir / 'server.log').read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("server did not start in 20 s")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def key(self, tenant: str = "default", *, test: bool = False, scopes: Any = None) -> str:
        """A new API key in this server's database."""
        engine = open_database(self.database_url)
        try:
            raw, _ = create_key(engine, tenant_id=tenant, test_mode=test, scopes=scopes)
        finally:
            engine.dispose()
        return raw

    def client(self, key: str | None) -> httpx.Client:
        """An HTTP client for this server that sends ``key``."""
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def new_server(tmp: Path, *extra_args: str) -> Server:
    """A server (not started) on a fresh database under ``tmp``."""
    tmp.mkdir(parents=True, exist_ok=True)
    return Server(tmp, database_url(tmp), extra_args=extra_args)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server shared by the API tests (each test uses its own tenant)."""
    running = new_server(tmp_path_factory.mktemp("api"))
    # A key exists before the first start, so serve creates no bootstrap key.
    running.key("bootstrap-guard")
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def tenant(request: pytest.FixtureRequest) -> str:
    """A tenant name of this test's own."""
    return f"t-{request.node.name}"[:60]


@pytest.fixture
def api(server: Server, tenant: str) -> Iterator[httpx.Client]:
    """A client with a live key of this test's tenant."""
    with server.client(server.key(tenant)) as client:
        yield client
