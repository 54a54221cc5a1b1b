"""``cuaflow keys`` and ``cuaflow serve``'s first start, as real processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.api.conftest import free_port


def cuaflow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI; fail on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "cuaflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | {"CUAFLOW_DATA_DIR": str(cwd / "data")},
    )


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    """keys create prints the key once, list shows only its prefix, revoke marks it revoked."""
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    created = cuaflow(
        "keys", "create", "--test", "--tenant", "acme", "--scopes", "runs:read,runs:write",
        "--database-url", url, cwd=tmp_path,
    )  # fmt: skip
    raw = created.stdout.strip()
    assert re.fullmatch(r"sk-cuaflow-test-[0-9a-f]{48}", raw)
    assert "only time" in created.stderr
    listed = cuaflow("keys", "list", "--database-url", url, cwd=tmp_path).stdout
    assert raw[:24] in listed
    assert raw not in listed
    assert "acme" in listed
    bad = subprocess.run(
        [sys.executable, "-m", "cuaflow", "keys", "create", "--scopes", "admin"],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=os.environ | {"CUAFLOW_DATABASE_URL": url},
    )
    assert bad.returncode == 2
    assert "unknown scope" in bad.stderr
    cuaflow("keys", "revoke", raw[:24], "--database-url", url, cwd=tmp_path)
    assert raw[:24] not in cuaflow("keys", "list", "--database-url", url, cwd=tmp_path).stdout
    assert raw[:24] in cuaflow("keys", "list", "--all", "--database-url", url, cwd=tmp_path).stdout


def test_first_serve_prints_a_working_key_once(tmp_path: Path) -> None:
    """On an empty database, serve creates and prints one key, which the API then accepts."""
    port = free_port()
    env = os.environ | {"CUAFLOW_DATA_DIR": str(tmp_path / "data"), "CUAFLOW_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "cuaflow", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        output = ""
        deadline = time.monotonic() + 20
        while "Uvicorn running" not in output and time.monotonic() < deadline:
            output += process.stdout.readline()
        found = re.search(r"sk-cuaflow-live-[0-9a-f]{48}", output)
        assert found is not None, output
        answer = httpx.get(
            f"http://127.0.0.1:{port}/v1/workflows", headers={"X-API-Key": found.group()}
        )
        assert answer.status_code == 200
        assert (tmp_path / "data" / "cuaflow.db").exists()
    finally:
        process.terminate()
        process.wait(10)
    again = subprocess.Popen(
        [sys.executable, "-m", "cuaflow", "serve", "--port", str(free_port()), "--no-worker"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert again.stdout is not None
        output = ""
        deadline = time.monotonic() + 20
        while "Uvicorn running" not in output and time.monotonic() < deadline:
            output += again.stdout.readline()
        assert "sk-cuaflow-" not in output
        assert "worker off" in output
    finally:
        again.terminate()
        again.wait(10)
