"""Workflow routes against a real server: save, version, read, list, archive, validate, start."""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from tests.api.conftest import Server
from tests.api.helpers import (
    SEED_CURL_BODY,
    create_workflow,
    quick_workflow,
    start_run,
    wait_for,
)

REFERENCE_FORM = {
    "name": "Invoice reconciliation",
    "slug": "invoice-reconcile",
    "inputs_schema": {"type": "object", "properties": {"order_id": {"type": "string"}}},
    "description": "reads an invoice",
    "metadata": {"team": "finance"},
    "definition": {
        "steps": [{"id": "ok", "type": "succeed", "output": {"order": "{{inputs.order_id}}"}}],
        "output": {"order": "{{inputs.order_id}}"},
    },
}


def test_brief_curl_example_creates_runs_and_streams(api: httpx.Client) -> None:
    """The brief's curl body, sent verbatim, saves a workflow whose run can be read and streamed."""
    created = api.post(
        "/v1/workflows", content=SEED_CURL_BODY, headers={"Content-Type": "application/json"}
    )
    assert created.status_code == 200, created.text
    workflow = created.json()
    assert workflow["object"] == "workflow"
    assert workflow["id"].startswith("wf_")
    assert (workflow["name"], workflow["slug"]) == ("setup-and-test", "setup-and-test")
    assert (workflow["version"], workflow["version_label"]) == (1, "1.0.0")
    assert workflow["dsl_version"] == "2026-06-01"
    assert workflow["status"] == "active"
    assert [step["id"] for step in workflow["definition"]["steps"]][-1] == "final"
    assert workflow["created_at"].endswith("Z")

    run = api.post(f"/v1/workflows/{workflow['id']}/runs").json()
    assert run["object"] == "workflow.run"
    assert run["id"].startswith("wfr_")
    assert (run["workflow_id"], run["workflow_version"]) == (workflow["id"], 1)
    assert run["status"] == "queued"
    finished = wait_for(api, run["id"])
    # Without a model the task steps cannot pass, so the first assert stops the run.
    assert finished["status"] == "failed"
    assert finished["error"]["code"] == "ASSERTION_FAILED"
    assert finished["steps"]["start_up"]["passed"] is False

    with api.stream("GET", f"/v1/runs/{run['id']}/events") as stream:
        text = stream.read().decode()
    assert text.startswith("id: 1\nevent: status\ndata: ")
    assert text.rstrip("\n").split("\n\n")[-1].split("\n")[1] == "event: done"


def test_same_slug_adds_versions_and_versions_stay_readable(api: httpx.Client) -> None:
    """Posting an existing slug adds version 2 of the same workflow; ?version=1 still reads v1."""
    first = create_workflow(api, REFERENCE_FORM)
    changed = REFERENCE_FORM | {"description": "second"}
    second = create_workflow(api, changed)
    assert second["id"] == first["id"]
    assert second["version"] == 2
    assert second["created_at"] == first["created_at"]
    assert api.get(f"/v1/workflows/{first['id']}").json()["description"] == "second"
    old = api.get(f"/v1/workflows/{first['id']}", params={"version": 1}).json()
    assert (old["version"], old["description"]) == (1, "reads an invoice")
    assert old["metadata"] == {"team": "finance"}
    assert old["definition"] == REFERENCE_FORM["definition"]
    missing = api.get(f"/v1/workflows/{first['id']}", params={"version": 3})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "WORKFLOW_NOT_FOUND"


def test_put_saves_a_new_version_from_the_latest(api: httpx.Client) -> None:
    """PUT merges the given fields into the latest version and saves the next one."""
    saved = create_workflow(api, REFERENCE_FORM)
    renamed = api.put(f"/v1/workflows/{saved['id']}", json={"name": "Renamed"})
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["version"], renamed.json()["name"]) == (2, "Renamed")
    assert renamed.json()["slug"] == "invoice-reconcile"
    assert renamed.json()["definition"] == REFERENCE_FORM["definition"]
    new_steps = {"steps": [{"id": "x", "type": "succeed"}]}
    replaced = api.put(f"/v1/workflows/{saved['id']}", json=new_steps).json()
    assert replaced["version"] == 3
    assert replaced["definition"] == {"steps": [{"id": "x", "type": "succeed"}]}
    assert api.get(f"/v1/workflows/{saved['id']}", params={"version": 2}).json()["name"] == (
        "Renamed"
    )


def test_put_rejects_bad_changes_with_locations(api: httpx.Client) -> None:
    """A bad field in a PUT is a 422 naming it; an empty PUT is a 422 too."""
    saved = create_workflow(api, quick_workflow("put-bad"))
    bad = api.put(f"/v1/workflows/{saved['id']}", json={"steps": [{"id": "a", "type": "task"}]})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["loc"] == ["steps", 0, "task"]
    empty = api.put(f"/v1/workflows/{saved['id']}", json={})
    assert empty.status_code == 422
    status = api.put(f"/v1/workflows/{saved['id']}", json={"status": "paused"})
    assert status.json()["error"]["details"][0]["loc"] == ["status"]
    assert api.put("/v1/workflows/wf_00000000000000", json={"name": "x"}).status_code == 404


def test_archive_keeps_reads_and_refuses_new_runs(api: httpx.Client) -> None:
    """DELETE archives: reads still work, new runs answer 409, a new version reactivates."""
    saved = create_workflow(api, quick_workflow("archived-one"))
    archived = api.delete(f"/v1/workflows/{saved['id']}")
    assert archived.status_code == 200
    assert archived.json()["status"] == "archived"
    assert api.get(f"/v1/workflows/{saved['id']}").json()["status"] == "archived"
    refused = api.post(f"/v1/workflows/{saved['id']}/runs", json={})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "INVALID_STATE"
    assert refused.json()["error"]["current_state"] == "archived"
    listed = api.get("/v1/workflows", params={"status": "archived"}).json()["data"]
    assert [item["id"] for item in listed] == [saved["id"]]
    revived = api.put(f"/v1/workflows/{saved['id']}", json={"status": "active"}).json()
    assert (revived["status"], revived["version"]) == ("active", 1)
    assert api.post(f"/v1/workflows/{saved['id']}/runs").status_code == 200


def test_list_pages_newest_first_with_cursor(api: httpx.Client) -> None:
    """Listing pages through every workflow once, newest first, with has_more on all but the last."""
    ids = [create_workflow(api, quick_workflow(f"page-{i}"))["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2} | ({"starting_after": cursor} if cursor else {})
        page = api.get("/v1/workflows", params=params).json()
        assert page["object"] == "list"
        seen += [item["id"] for item in page["data"]]
        pages += 1
        if not page["has_more"]:
            break
        cursor = page["data"][-1]["id"]
    assert seen == list(reversed(ids))
    assert pages == 3


def test_list_rejects_bad_limits_and_cursors(api: httpx.Client) -> None:
    """limit outside 1-100 is 400 INVALID_LIMIT; a cursor naming nothing is 400 INVALID_CURSOR."""
    for limit in ("0", "101", "abc"):
        answer = api.get("/v1/workflows", params={"limit": limit})
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert (error["code"], error["min"], error["max"]) == ("INVALID_LIMIT", 1, 100)
    for cursor in ("nonsense", "wf_0123456789abcdef", "wfr_0123456789abcdef"):
        answer = api.get("/v1/workflows", params={"starting_after": cursor})
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "INVALID_CURSOR"
    bad_status = api.get("/v1/workflows", params={"status": "deleted"})
    assert bad_status.json()["error"]["valid_options"] == ["active", "archived"]


def test_invalid_definitions_name_the_exact_location(api: httpx.Client) -> None:
    """Validation details point at the user's own location, however deep, in both forms."""
    nested = {
        "name": "deep",
        "steps": [
            {
                "id": "outer",
                "type": "loop",
                "count": 2,
                "body": [{"id": "a", "type": "assert", "condition": {"op": "regex", "left": 1}}],
            }
        ],
    }
    answer = api.post("/v1/workflows", json=nested)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert (error["code"], error["type"]) == ("VALIDATION_ERROR", "validation_error")
    assert error["details"][0]["loc"] == ["steps", 0, "body", 0, "condition", "op"]
    reference = REFERENCE_FORM | {"definition": {"steps": [{"id": "t", "type": "task"}]}}
    answer = api.post("/v1/workflows", json=reference)
    assert answer.json()["error"]["details"][0]["loc"] == ["definition", "steps", 0, "task"]
    unknown = api.post("/v1/workflows", json=quick_workflow() | {"bogus": 1})
    assert unknown.json()["error"]["details"][0]["loc"] == ["bogus"]
    not_json = api.post(
        "/v1/workflows", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 422
    assert "JSON" in not_json.json()["error"]["details"][0]["msg"]


def test_validate_checks_without_saving(api: httpx.Client) -> None:
    """POST /v1/workflows/validate answers the canonical form or 422, and saves nothing."""
    valid = api.post("/v1/workflows/validate", content=SEED_CURL_BODY)
    assert valid.status_code == 200, valid.text
    body = valid.json()
    assert (body["object"], body["valid"]) == ("workflow.validation", True)
    assert body["definition"]["steps"][1]["condition"]["op"] == "eq"
    invalid = api.post("/v1/workflows/validate", json={"name": "x", "steps": []})
    assert invalid.status_code == 422
    assert invalid.json()["error"]["details"][0]["loc"] == ["steps"]
    assert api.get("/v1/workflows").json()["data"] == []


def test_runs_pin_their_version_and_check_inputs(api: httpx.Client) -> None:
    """A run pins the version it started with; inputs are checked against inputs_schema."""
    saved = create_workflow(api, REFERENCE_FORM)
    create_workflow(api, REFERENCE_FORM | {"description": "v2"})
    pinned = start_run(api, saved["id"], version=1, inputs={"order_id": "A-1"})
    assert pinned["workflow_version"] == 1
    latest = start_run(api, saved["id"], inputs={"order_id": "A-2"})
    assert latest["workflow_version"] == 2
    assert wait_for(api, latest["id"])["output"] == {"order": "A-2"}
    wrong = api.post(f"/v1/workflows/{saved['id']}/runs", json={"inputs": {"order_id": 5}})
    assert wrong.status_code == 422
    assert wrong.json()["error"]["details"][0]["loc"][0] == "inputs"
    unknown = api.post(f"/v1/workflows/{saved['id']}/runs", json={"colour": "red"})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"] == [{"loc": ["colour"], "msg": "unknown field"}]
    out_of_range = api.post(f"/v1/workflows/{saved['id']}/runs", json={"max_steps": 0})
    assert out_of_range.json()["error"]["details"][0]["loc"] == ["max_steps"]


def test_adhoc_runs_take_an_inline_definition(api: httpx.Client) -> None:
    """POST /v1/workflows/runs runs an inline definition; its errors sit under definition."""
    answer = api.post(
        "/v1/workflows/runs", json={"definition": {"steps": quick_workflow()["steps"]}}
    )
    assert answer.status_code == 200, answer.text
    run = answer.json()
    assert run["workflow_id"] is None
    assert wait_for(api, run["id"])["output"] == {"ok": True}
    bad = api.post("/v1/workflows/runs", json={"definition": {"steps": [{"id": "t"}]}})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["loc"][:3] == ["definition", "steps", 0]
    missing = api.post("/v1/workflows/runs", json={})
    assert missing.json()["error"]["details"] == [{"loc": ["definition"], "msg": "field required"}]


def test_unknown_workflow_is_404_with_envelope(api: httpx.Client) -> None:
    """Every route of an unknown workflow id answers 404 WORKFLOW_NOT_FOUND with a request id."""
    for method, path in [
        ("GET", "/v1/workflows/wf_0123456789abcdef"),
        ("DELETE", "/v1/workflows/wf_0123456789abcdef"),
        ("POST", "/v1/workflows/wf_0123456789abcdef/runs"),
    ]:
        answer = api.request(method, path)
        assert answer.status_code == 404, (method, path)
        error = answer.json()["error"]
        assert (error["code"], error["type"]) == ("WORKFLOW_NOT_FOUND", "not_found_error")
        assert error["request_id"] == answer.headers["X-Request-Id"]


def test_oversized_bodies_are_refused(server: Server, api: httpx.Client) -> None:
    """A body over the limit answers 413 PAYLOAD_TOO_LARGE, declared or chunked."""
    big = {"name": "big", "description": "x" * 300_000, "steps": quick_workflow()["steps"]}
    declared = api.post("/v1/workflows", json=big)
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "big", "description": "'
        for _ in range(30):
            yield b"y" * 10_000
        yield b'", "steps": []}'

    chunked = api.post("/v1/workflows", content=chunks())
    assert chunked.status_code == 413
    assert chunked.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_openapi_and_offline_docs_page(server: Server) -> None:
    """/openapi.json lists every route; /docs renders it with no asset from another host."""
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    paths = set(spec["paths"])
    for path in (
        "/v1/workflows",
        "/v1/workflows/{workflow_id}",
        "/v1/workflows/{workflow_id}/runs",
        "/v1/workflows/runs",
        "/v1/workflows/validate",
        "/v1/runs",
        "/v1/runs/{run_id}",
        "/v1/runs/{run_id}/cancel",
        "/v1/runs/{run_id}/resume",
        "/v1/runs/{run_id}/events",
        "/v1/workflows/runs/{run_id}/events",
    ):
        assert path in paths, path
    security = spec["components"]["securitySchemes"]
    assert security["APIKeyHeader"]["name"] == "X-API-Key"
    page = httpx.get(f"{server.url}/docs")
    assert page.status_code == 200
    assert "/openapi.json" in page.text
    assert "<script src=" not in page.text
    assert "https://" not in page.text
