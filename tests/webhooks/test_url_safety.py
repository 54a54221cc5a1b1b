"""Webhook URL checks: schemes, credentials, and non-public addresses, with and without the flag."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from cuaflow.dsl.parse import parse_workflow
from cuaflow.engine.start import RunOptions, TaskRunOptions, start_task_run, start_workflow_run
from cuaflow.errors import WorkflowInvalid
from cuaflow.store import runs as store
from cuaflow.store import tables
from cuaflow.store.database import open_database
from cuaflow.webhooks.url_safety import ALLOW_PRIVATE_ENV, check_url
from tests.db import database_url

WORKFLOW = parse_workflow({"name": "w", "steps": [{"id": "ok", "type": "succeed"}]})


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    return open_database(database_url(tmp_path))


@pytest.fixture
def strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_PRIVATE_ENV, raising=False)


@pytest.fixture
def allow_private(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")


@pytest.mark.usefixtures("strict")
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8080/hook", "127.0.0.1, a loopback address"),
        ("http://localhost/hook", "a loopback address"),
        ("http://[::1]/hook", "::1, a loopback address"),
        ("http://[::ffff:127.0.0.1]/hook", "a loopback address"),
        ("http://2130706433/hook", "127.0.0.1, a loopback address"),
        ("http://10.1.2.3/hook", "10.1.2.3, a private address"),
        ("https://192.168.0.10/hook", "a private address"),
        ("http://172.16.5.4/hook", "a private address"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254, a link-local address"),
        ("http://0.0.0.0/hook", "an unspecified address"),
        ("http://100.64.0.1/hook", "a reserved address"),
        ("http://224.0.0.1/hook", "a multicast address"),
        ("http://no-such-host.invalid/hook", "does not resolve"),
    ],
)
def test_non_public_hosts_are_refused_by_default(url: str, reason: str) -> None:
    """Hosts resolving to loopback, private, link-local or reserved addresses are refused."""
    refusal = check_url(url).refusal
    assert refusal is not None
    assert reason in refusal


@pytest.mark.usefixtures("strict")
def test_a_public_address_passes_and_is_the_address_to_connect_to() -> None:
    """A public IP is allowed, and the check names the very address it approved."""
    checked = check_url("https://93.184.216.34:8443/hook?x=1")
    assert checked.refusal is None
    assert checked.address == "93.184.216.34"


@pytest.mark.parametrize("flag", ["strict", "allow_private"])
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hook", "must use http or https, not 'ftp'"),
        ("file:///etc/passwd", "must use http or https, not 'file'"),
        ("example.com/hook", "must use http or https, not no scheme"),
        ("https://user:secret@example.com/hook", "must not contain credentials"),
        ("https://token@example.com/hook", "must not contain credentials"),
        ("http:///hook", "has no host"),
        ("http://example.com:99999/hook", "is not a valid URL"),
    ],
)
def test_bad_forms_are_refused_even_when_private_addresses_are_allowed(
    url: str, reason: str, flag: str, request: pytest.FixtureRequest
) -> None:
    """Scheme, credentials and host rules hold whatever the private-address flag says."""
    request.getfixturevalue(flag)
    refusal = check_url(url).refusal
    assert refusal is not None
    assert reason in refusal


@pytest.mark.usefixtures("allow_private")
@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "http://10.1.2.3/", "http://169.254.169.254/"]
)
def test_the_operator_flag_allows_private_addresses(url: str) -> None:
    """With CUAFLOW_WEBHOOK_ALLOW_PRIVATE=1 loopback and private hosts pass, by name."""
    assert check_url(url).refusal is None
    assert check_url(url).address is None


@pytest.mark.usefixtures("strict")
def test_starting_a_run_with_an_unsafe_url_is_invalid_and_writes_nothing(
    engine: sa.Engine,
) -> None:
    """start_workflow_run refuses a loopback webhook_url at ("webhook_url",) naming the reason."""
    with pytest.raises(WorkflowInvalid) as caught:
        start_workflow_run(engine, WORKFLOW, RunOptions(webhook_url="http://127.0.0.1:9/hook"))
    [issue] = caught.value.issues
    assert issue.loc == ("webhook_url",)
    assert "loopback" in issue.msg
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.runs)).scalar() == 0


@pytest.mark.usefixtures("allow_private")
def test_a_run_with_a_webhook_url_gets_its_own_stored_secret(engine: sa.Engine) -> None:
    """Each run with a webhook_url gets a distinct whsec_ secret, returned and stored."""
    first = start_workflow_run(engine, WORKFLOW, RunOptions(webhook_url="http://127.0.0.1:9/"))
    second = start_workflow_run(engine, WORKFLOW, RunOptions(webhook_url="http://127.0.0.1:9/"))
    plain = start_workflow_run(engine, WORKFLOW, RunOptions())
    assert first["webhook_secret"].startswith("whsec_")
    assert first["webhook_secret"] != second["webhook_secret"]
    assert store.get_run(engine, first["id"])["webhook_secret"] == first["webhook_secret"]
    assert plain["webhook_secret"] is None


def test_task_runs_check_the_url_and_get_a_secret_too(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /v1/runs task runs follow the same rules: refused when unsafe, a secret when not."""
    options = TaskRunOptions(machine_id="m", task="t", webhook_url="http://10.0.0.7/hook")
    monkeypatch.delenv(ALLOW_PRIVATE_ENV, raising=False)
    with pytest.raises(WorkflowInvalid, match="private address"):
        start_task_run(engine, options)
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")
    row = start_task_run(engine, options)
    assert store.get_run(engine, row["id"])["webhook_secret"].startswith("whsec_")
