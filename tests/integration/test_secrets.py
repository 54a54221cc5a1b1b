"""Secrets: typed by the machine, never stored or shown in clear anywhere else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from cuaflow.errors import NotFound, WorkflowInvalid
from cuaflow.store import tables
from cuaflow.store.secrets import delete_secret, list_secrets, load_secrets, set_secret
from tests.integration.engine_harness import Harness, bash, wf

VALUE = "s3cr3t-Value-42"


@pytest.fixture(autouse=True)
def key_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUAFLOW_DATA_DIR", str(tmp_path / "keys"))


async def test_secret_reaches_the_machine_and_nothing_else(
    harness: Harness, tmp_path: Path
) -> None:
    """The value is in the file the command wrote; no event, journal row or run row holds it."""
    set_secret(harness.engine, "TOKEN", VALUE)
    run = await harness.run(
        wf(
            bash("use", "echo {{secrets.TOKEN}} > token.txt", "echo token is {{secrets.TOKEN}}"),
            output={"task": "{{use.status}}", "text": "Bearer {{secrets.TOKEN}}"},
        )
    )
    assert run["status"] == "succeeded"
    workdir = harness.data_dir / "runs" / run["id"]
    assert (workdir / "token.txt").read_text().strip() == VALUE
    assert run["output"] == {"task": "succeeded", "text": "Bearer {{secrets.TOKEN}}"}
    with harness.engine.connect() as conn:
        everything = [
            json.dumps([list(row) for row in conn.execute(sa.select(table)).all()], default=str)
            for table in tables.metadata.sorted_tables
            if table.name != "secrets"
        ]
        stored = conn.execute(sa.select(tables.secrets.c.ciphertext)).scalar_one()
    assert not any(VALUE in dump for dump in everything)
    assert VALUE not in stored
    outputs = [
        e["data"].get("output", "") for e in harness.events(run["id"]) if e["type"] == "tool_call"
    ]
    assert "token is ***" in outputs[1]


async def test_unknown_secret_fails_the_step_naming_it(harness: Harness) -> None:
    """A template naming a secret that is not set fails its step with the secret's name."""
    run = await harness.run(wf({"id": "s", "type": "succeed", "output": "{{secrets.NOPE}}"}))
    assert run["status"] == "failed"
    assert "NOPE" in run["error"]["message"]


def test_secrets_are_tenant_scoped_and_validated(harness: Harness) -> None:
    """Each tenant sees its own secrets; bad names are refused; values round-trip."""
    set_secret(harness.engine, "A", "1", tenant_id="t1")
    set_secret(harness.engine, "A", "2", tenant_id="t1")
    set_secret(harness.engine, "B", "3", tenant_id="t2")
    assert load_secrets(harness.engine, "t1") == {"A": "2"}
    assert [row["name"] for row in list_secrets(harness.engine, tenant_id="t2")] == ["B"]
    with pytest.raises(WorkflowInvalid):
        set_secret(harness.engine, "bad name", "x")
    delete_secret(harness.engine, "A", tenant_id="t1")
    with pytest.raises(NotFound):
        delete_secret(harness.engine, "A", tenant_id="t1")
