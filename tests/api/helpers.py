"""Workflow documents and waiting helpers shared by the API tests."""

from __future__ import annotations

import time
from typing import Any

import httpx

FINISHED = {"succeeded", "failed", "cancelled", "timed_out"}

# The body of the brief's curl example (POST /v1/workflows), byte for byte.
SEED_CURL_BODY = """{
    "name": "setup-and-test",
    "version": "1.0.0",
    "steps": [
      {
        "id": "start_up",
        "type": "task",
        "task": "Start the web server and wait for it to listen on port 8080",
        "max_steps": 20
      },
      {
        "id": "assert_ready",
        "type": "assert",
        "condition": {
          "type": "field_equals",
          "field": "start_up.status",
          "value": "succeeded"
        }
      },
      {
        "id": "run_test",
        "type": "task",
        "task": "Run the integration test suite",
        "max_steps": 50
      },
      {
        "id": "check_test",
        "type": "assert",
        "condition": {
          "type": "field_equals",
          "field": "run_test.status",
          "value": "succeeded"
        }
      },
      {
        "id": "human_ok",
        "type": "human_approval",
        "instruction": "Review the test results"
      },
      {
        "id": "cleanup",
        "type": "task",
        "task": "Stop the web server",
        "max_steps": 10
      },
      {
        "id": "final",
        "type": "succeed",
        "message": "Setup and test workflow completed successfully"
      }
    ]
  }"""


def bash_task(step_id: str, command: str = "true") -> dict[str, Any]:
    """A task step the scripted agent performs: one bash command."""
    return {
        "id": step_id,
        "type": "task",
        "task": f"run {command}",
        "actions": [{"type": "bash", "command": command}],
    }


def quick_workflow(name: str = "quick") -> dict[str, Any]:
    """A workflow that succeeds at once with an output."""
    return {"name": name, "steps": [{"id": "done", "type": "succeed", "output": {"ok": True}}]}


def approval_workflow(name: str = "approve-me") -> dict[str, Any]:
    """A workflow that waits for a human, then succeeds."""
    return {
        "name": name,
        "steps": [
            {"id": "ask", "type": "human_approval", "message": "go on?"},
            {"id": "done", "type": "succeed", "output": {"approved": "{{ask.approved}}"}},
        ],
    }


def tasks_workflow(count: int = 3, command: str = "sleep 0.02") -> dict[str, Any]:
    """Several scripted task steps in a row (a log of a few dozen events, written over time)."""
    return {"name": "tasks", "steps": [bash_task(f"t{i}", command) for i in range(count)]}


def create_workflow(api: httpx.Client, document: dict[str, Any]) -> dict[str, Any]:
    """POST a workflow; assert it was saved."""
    response = api.post("/v1/workflows", json=document)
    assert response.status_code == 200, response.text
    saved: dict[str, Any] = response.json()
    return saved


def start_run(api: httpx.Client, workflow_id: str, **body: Any) -> dict[str, Any]:
    """Start a run of a saved workflow; assert it was accepted."""
    response = api.post(f"/v1/workflows/{workflow_id}/runs", json=body)
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


def wait_for(
    api: httpx.Client, run_id: str, statuses: set[str] = FINISHED, timeout: float = 30
) -> dict[str, Any]:
    """Poll a run until its status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = api.get(f"/v1/runs/{run_id}").json()
        if run["status"] in statuses:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {run['status']} after {timeout} s")
        time.sleep(0.02)
