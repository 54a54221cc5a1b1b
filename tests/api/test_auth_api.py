"""Keys, scopes, tenants and test mode against a real server."""

from __future__ import annotations

import httpx
import pytest

from cuaflow.store.database import open_database
from cuaflow.store.keys import list_keys, revoke_key
from tests.api.conftest import Server
from tests.api.helpers import approval_workflow, create_workflow, start_run, wait_for


def test_missing_malformed_and_unknown_keys_are_401(server: Server) -> None:
    """Every way of not having a valid key answers 401 INVALID_API_KEY with a challenge."""
    unknown = "sk-cuaflow-live-" + "0" * 48
    attempts: list[dict[str, str]] = [
        {},
        {"X-API-Key": "nope"},
        {"X-API-Key": unknown},
        {"Authorization": f"Basic {unknown}"},
        {"Authorization": "Bearer sk-cuaflow-test-zzz"},
        {"X-API-Key": f"Bearer {unknown}"},
    ]
    for headers in attempts:
        answer = httpx.get(f"{server.url}/v1/runs", headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["WWW-Authenticate"] == "Bearer"
        error = answer.json()["error"]
        assert (error["code"], error["type"]) == ("INVALID_API_KEY", "auth_error")
        assert error["request_id"] == answer.headers["X-Request-Id"]
        assert error["suggestion"]


def test_bearer_and_header_keys_both_work(server: Server, tenant: str) -> None:
    """A key works as X-API-Key and as a bearer token; a blank X-API-Key falls through."""
    key = server.key(tenant)
    for headers in (
        {"X-API-Key": key},
        {"Authorization": f"Bearer {key}"},
        {"X-API-Key": "", "Authorization": f"Bearer {key}"},
    ):
        answer = httpx.get(f"{server.url}/v1/workflows", headers=headers)
        assert answer.status_code == 200, headers
        assert "X-Test-Mode" not in answer.headers


def test_revoked_key_stops_working(server: Server, tenant: str) -> None:
    """After revoke, the key answers 401 (the test server caches keys for 0 s)."""
    key = server.key(tenant)
    assert httpx.get(f"{server.url}/v1/runs", headers={"X-API-Key": key}).status_code == 200
    engine = open_database(server.database_url)
    try:
        record = next(k for k in list_keys(engine) if k.tenant_id == tenant)
        revoke_key(engine, record.prefix)
    finally:
        engine.dispose()
    assert httpx.get(f"{server.url}/v1/runs", headers={"X-API-Key": key}).status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/v1/runs", "runs:read"),
        ("POST", "/v1/runs", "runs:write"),
        ("GET", "/v1/workflows", "workflows:read"),
        ("POST", "/v1/workflows", "workflows:write"),
        ("GET", "/v1/workflows/runs", "workflows:read"),
        ("POST", "/v1/workflows/runs", "workflows:write"),
        ("GET", "/v1/runs/run_0123456789abcdef/events", "runs:read"),
        ("POST", "/v1/runs/run_0123456789abcdef/cancel", "runs:write"),
    ],
)
def test_missing_scope_is_403_naming_it(
    server: Server, tenant: str, method: str, path: str, scope: str
) -> None:
    """A key without the route's scope answers 403 INSUFFICIENT_SCOPE with both scope lists."""
    others = [
        s for s in ("runs:read", "runs:write", "workflows:read", "workflows:write") if s != scope
    ]
    key = server.key(tenant, scopes=others)
    answer = httpx.request(method, f"{server.url}{path}", headers={"X-API-Key": key}, json={})
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert (error["code"], error["type"]) == ("INSUFFICIENT_SCOPE", "auth_error")
    assert error["required_scope"] == scope
    assert error["current_scopes"] == others


def test_test_mode_keys_mark_every_answer_and_their_runs(server: Server, tenant: str) -> None:
    """A test key's answers carry X-Test-Mode: true (errors too) and its runs are test runs."""
    with server.client(server.key(tenant, test=True)) as api:
        listed = api.get("/v1/runs")
        assert listed.headers["X-Test-Mode"] == "true"
        missing = api.get("/v1/runs/run_0123456789abcdef")
        assert missing.status_code == 404
        assert missing.headers["X-Test-Mode"] == "true"
        created = api.post("/v1/runs", json={"machine_id": "local-terminal", "task": "open it"})
        assert created.headers["X-Test-Mode"] == "true"
        run = created.json()
        assert run["test_mode"] is True
        finished = wait_for(api, run["id"])
        assert finished["cost_cents"] == 0


def test_tenants_never_see_each_other(server: Server) -> None:
    """A second tenant's key gets 404 for every id of the first tenant, and empty lists."""
    with server.client(server.key("tenant-a")) as a, server.client(server.key("tenant-b")) as b:
        workflow = create_workflow(a, approval_workflow("secret"))
        run = start_run(a, workflow["id"])
        wait_for(a, run["id"], {"awaiting_human"})
        probes = [
            ("GET", f"/v1/workflows/{workflow['id']}"),
            ("PUT", f"/v1/workflows/{workflow['id']}"),
            ("DELETE", f"/v1/workflows/{workflow['id']}"),
            ("POST", f"/v1/workflows/{workflow['id']}/runs"),
            ("GET", f"/v1/runs/{run['id']}"),
            ("GET", f"/v1/workflows/runs/{run['id']}"),
            ("POST", f"/v1/runs/{run['id']}/cancel"),
            ("POST", f"/v1/runs/{run['id']}/resume"),
            ("GET", f"/v1/runs/{run['id']}/events"),
        ]
        for method, path in probes:
            answer = b.request(method, path, json={"name": "x"} if method == "PUT" else None)
            assert answer.status_code == 404, (method, path, answer.text)
        assert b.get("/v1/workflows").json()["data"] == []
        assert b.get("/v1/runs").json()["data"] == []
        cursor = b.get("/v1/runs", params={"starting_after": run["id"]})
        assert cursor.json()["error"]["code"] == "INVALID_CURSOR"
        same_slug = create_workflow(b, approval_workflow("secret"))
        assert same_slug["id"] != workflow["id"]
        assert same_slug["version"] == 1
        # Tenant a's run was left alone by all of b's attempts.
        assert a.get(f"/v1/runs/{run['id']}").json()["status"] == "awaiting_human"
