"""The machines API, run artifacts and webhook deliveries, over a real server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from cuaflow.machines.registry import missing_programs
from tests.api.conftest import Server
from tests.api.helpers import bash_task, create_workflow, start_run, wait_for


def test_register_list_get_delete(api: httpx.Client, server: Server, tmp_path: Any) -> None:
    """A tenant registers a machine, sees it beside the built-ins, and deletes it; others never see it."""
    body = {"id": "box", "kind": "terminal", "config": {"workdir": str(tmp_path / "box")}}
    created = api.post("/v1/machines", json=body)
    assert created.status_code == 200, created.text  # creating POSTs answer 200, as the reference
    assert created.json()["object"] == "machine"
    assert api.post("/v1/machines", json=body).json()["error"]["code"] == "MACHINE_EXISTS"
    ids = [m["id"] for m in api.get("/v1/machines").json()["data"]]
    assert "local-terminal" in ids
    assert "box" in ids
    assert api.get("/v1/machines/box").json()["kind"] == "terminal"
    with server.client(server.key("someone-else")) as other:
        assert other.get("/v1/machines/box").status_code == 404
        assert other.delete("/v1/machines/box").status_code == 404
    assert api.delete("/v1/machines/box").json()["deleted"] is True
    assert api.get("/v1/machines/box").status_code == 404
    assert api.delete("/v1/machines/local-terminal").status_code == 409


def test_bad_machines_are_refused_at_their_field(api: httpx.Client) -> None:
    """Unknown kinds, bad configs and unknown fields answer 422 with the location."""
    answer = api.post("/v1/machines", json={"id": "d", "kind": "desktop", "config": {"width": 0}})
    assert answer.status_code == 422
    assert answer.json()["error"]["details"][0]["loc"][:2] == ["config", "width"]
    answer = api.post("/v1/machines", json={"id": "d", "kind": "toaster"})
    assert answer.status_code == 422
    assert api.post("/v1/machines", json={"id": "d", "kind": "terminal", "x": 1}).status_code == 422


def test_actions_run_on_a_machine_outside_any_run(api: httpx.Client) -> None:
    """POST /actions performs one action and reports it; a bad action is a 422 at its field."""
    done = api.post(
        "/v1/machines/local-terminal/actions", json={"type": "bash", "command": "echo hi"}
    )
    assert done.status_code == 200, done.text
    assert (done.json()["ok"], done.json()["output"].strip()) == (True, "hi")
    failed = api.post(
        "/v1/machines/local-terminal/actions", json={"type": "bash", "command": "exit 4"}
    )
    assert (failed.json()["ok"], failed.json()["exit_code"]) == (False, 4)
    bad = api.post("/v1/machines/local-terminal/actions", json={"type": "bash"})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["loc"] == ["command"]
    assert api.get("/v1/machines/local-terminal/screenshot").status_code == 409  # no screen
    assert (
        api.post("/v1/machines/nope/actions", json={"type": "wait", "seconds": 0}).status_code
        == 404
    )


@pytest.mark.skipif(bool(missing_programs("browser")), reason="needs Chromium")
def test_screenshot_of_a_browser_is_a_png(api: httpx.Client) -> None:
    """A browser machine shows its screen as a PNG; deleting it closes its Chromium."""
    api.post("/v1/machines", json={"id": "web", "kind": "browser"})
    api.post("/v1/machines/web/actions", json={"type": "navigate", "url": "about:blank"})
    try:
        shot = api.get("/v1/machines/web/screenshot")
        assert shot.status_code == 200
        assert shot.headers["content-type"] == "image/png"
        assert shot.content[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        # The server outlives this test: its debugging browser must not.
        assert api.delete("/v1/machines/web").status_code == 200


def test_artifacts_of_another_tenants_run_are_not_found(api: httpx.Client, server: Server) -> None:
    """A run's artifact list is its tenant's; a missing artifact is a 404."""
    saved = create_workflow(api, {"name": "a", "steps": [bash_task("t")]})
    run = wait_for(api, start_run(api, saved["id"])["id"])
    listed = api.get(f"/v1/runs/{run['id']}/artifacts")
    assert listed.status_code == 200
    assert listed.json()["data"] == []  # a scripted terminal task shows no screen
    assert api.get(f"/v1/runs/{run['id']}/artifacts/none.png").status_code == 404
    with server.client(server.key("another")) as other:
        assert other.get(f"/v1/runs/{run['id']}/artifacts").status_code == 404


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver on loopback that answers 200 and keeps what it got."""
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["content-length"])
            got.append({"headers": dict(self.headers), "body": self.rfile.read(length)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_deliveries_are_listed_and_redelivered(
    api: httpx.Client, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    """A finished run's delivery is listed as delivered; redeliver sends it again."""
    url, got = receiver
    saved = create_workflow(api, {"name": "w", "steps": [bash_task("t")]})
    run = start_run(api, saved["id"], webhook_url=url)
    assert run["webhook_secret"].startswith("whsec_")
    wait_for(api, run["id"])
    deliveries: list[dict[str, Any]] = []
    for _ in range(200):
        deliveries = api.get(f"/v1/runs/{run['id']}/webhooks").json()["data"]
        if deliveries and deliveries[0]["status"] == "delivered":
            break
        threading.Event().wait(0.05)
    assert [(d["event"], d["status"]) for d in deliveries] == [("run.succeeded", "delivered")]
    again = api.post(f"/v1/runs/{run['id']}/webhooks/{deliveries[0]['id']}/redeliver")
    assert again.status_code == 202
    for _ in range(200):
        if len(got) == 2:
            break
        threading.Event().wait(0.05)
    assert len(got) == 2
    assert got[0]["body"] == got[1]["body"]
    assert api.post(f"/v1/runs/{run['id']}/webhooks/nope/redeliver").status_code == 404


def test_secrets_are_set_listed_deleted_and_never_shown(api: httpx.Client, server: Server) -> None:
    """A secret set over HTTP is listed by name only, scoped to its tenant, and deletable."""
    answer = api.put("/v1/secrets/TOKEN", json={"value": "v3ry-s3cret"})
    assert answer.status_code == 200, answer.text
    assert "v3ry-s3cret" not in answer.text
    listed = api.get("/v1/secrets")
    assert [s["name"] for s in listed.json()["data"]] == ["TOKEN"]
    assert "v3ry-s3cret" not in listed.text
    assert api.put("/v1/secrets/bad name", json={"value": "x"}).status_code in (404, 422)
    with server.client(server.key("elsewhere")) as other:
        assert other.get("/v1/secrets").json()["data"] == []
        assert other.delete("/v1/secrets/TOKEN").status_code == 404
    assert api.delete("/v1/secrets/TOKEN").json()["deleted"] is True
    assert api.delete("/v1/secrets/TOKEN").status_code == 404
