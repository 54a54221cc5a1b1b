"""The `cuaflow` command line, run as a user runs it: a real process, real files, real exit codes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cuaflow.store import runs as store
from cuaflow.store.database import open_database

ROOT = Path(__file__).resolve().parents[2]
SCRIPTED = ROOT / "examples" / "setup-and-test-scripted.json"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cuaflow(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CUAFLOW_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    env.pop("CUAFLOW_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "cuaflow", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_run_brief_example_end_to_end(tmp_path: Path) -> None:
    """The brief's workflow with scripted actions starts a real server, tests it, and exits 0."""
    port = free_port()
    done = cuaflow(tmp_path, "run", str(SCRIPTED), "--input", f"port={port}", "--approve")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout
    assert f"127.0.0.1:{port}" in done.stdout
    assert "$0.25" in done.stdout  # five agent steps at 5 cents
    with socket.socket() as probe:  # cleanup stopped the server
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_rejection_exits_non_zero_with_the_error(tmp_path: Path) -> None:
    """A rejected approval fails the run; the CLI says why and exits 1."""
    done = cuaflow(tmp_path, "run", str(SCRIPTED), "--input", f"port={free_port()}", "--reject")
    assert done.returncode == 1
    assert "APPROVAL_REJECTED" in done.stdout


def test_unanswered_approval_leaves_the_run_waiting_for_resume(tmp_path: Path) -> None:
    """Without a terminal or a flag the run waits (exit 3); `cuaflow resume` answers it."""
    workflow = tmp_path / "wait.json"
    workflow.write_text(
        json.dumps(
            {
                "name": "wait",
                "steps": [
                    {"id": "gate", "type": "human_approval", "message": "ok?"},
                    {"id": "end", "type": "succeed", "output": "{{gate.note}}"},
                ],
            }
        )
    )
    done = cuaflow(tmp_path, "run", str(workflow))
    assert done.returncode == 3
    run_id = done.stdout.split("run ")[1].split()[0]
    engine = open_database(f"sqlite:///{tmp_path / 'data' / 'cuaflow.db'}")
    assert store.get_run(engine, run_id)["status"] == "awaiting_human"
    answered = cuaflow(tmp_path, "resume", run_id, "--note", "later")
    assert answered.returncode == 0, answered.stderr
    assert store.get_run(engine, run_id)["status"] == "running"
    again = cuaflow(tmp_path, "resume", run_id)
    assert again.returncode == 1
    assert "NOT_AWAITING_HUMAN" in again.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--input", "port=notanumber"], "inputs"),
        (["--input", "port"], "key=value"),
    ],
)
def test_bad_inputs_are_refused_before_the_run_starts(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    """Inputs that break inputs_schema exit 2 with the location, and no run is created."""
    done = cuaflow(tmp_path, "run", str(SCRIPTED), *args)
    assert done.returncode == 2
    assert fragment in done.stderr
    assert "run wfr_" not in done.stdout


def test_validate_reports_locations_and_exit_codes(tmp_path: Path) -> None:
    """`cuaflow validate` prints each problem at its JSON location and exits 1 if any file is bad."""
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "name": "bad",
                "steps": [
                    {
                        "id": "a",
                        "type": "assert",
                        "condition": {"op": "eq", "left": "{{later.status}}", "right": 1},
                    },
                    {"id": "later", "type": "task", "task": "x"},
                ],
            }
        )
    )
    good = cuaflow(tmp_path, "validate", str(SCRIPTED))
    assert good.returncode == 0
    done = cuaflow(tmp_path, "validate", str(SCRIPTED), str(bad))
    assert done.returncode == 1
    assert "steps/0/condition/left" in done.stderr
    assert "later" in done.stderr
