"""Idempotency-Key and request ids against a real server, across a restart too."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.api.conftest import new_server
from tests.api.helpers import create_workflow, quick_workflow


def test_same_key_same_body_replays_the_first_answer(api: httpx.Client) -> None:
    """A retried create with the same key and body gets the first answer, marked as a replay."""
    workflow = create_workflow(api, quick_workflow("idem"))
    path = f"/v1/workflows/{workflow['id']}/runs"
    headers = {"Idempotency-Key": "order-4821:a_b"}
    first = api.post(path, json={"metadata": {"n": 1}, "inputs": {}}, headers=headers)
    # Same JSON, other key order and spacing: the same request.
    again = api.post(path, content=b'{ "inputs": {},  "metadata": {"n": 1} }', headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replay"] == "true"
    assert "Idempotent-Replay" not in first.headers
    runs = api.get("/v1/runs", params={"workflow_id": workflow["id"]}).json()["data"]
    assert [run["id"] for run in runs] == [first.json()["id"]]


def test_same_key_other_body_is_422_reused(api: httpx.Client) -> None:
    """The same key with another body, or on another route, answers 422 IDEMPOTENCY_KEY_REUSED."""
    headers = {"Idempotency-Key": "reuse-me"}
    assert api.post("/v1/workflows", json=quick_workflow("a"), headers=headers).status_code == 200
    other = api.post("/v1/workflows", json=quick_workflow("b"), headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    task = {"machine_id": "local-terminal", "task": "x"}
    assert api.post("/v1/runs", json=task, headers=headers).status_code == 422


def test_failed_request_leaves_the_key_usable(api: httpx.Client) -> None:
    """A create that fails validation stores nothing, so the key works for the fixed body."""
    headers = {"Idempotency-Key": "fix-and-retry"}
    bad = api.post("/v1/workflows", json={"name": "x", "steps": []}, headers=headers)
    assert bad.status_code == 422
    good = api.post("/v1/workflows", json=quick_workflow("fixed"), headers=headers)
    assert good.status_code == 200
    assert "Idempotent-Replay" not in good.headers


def test_malformed_keys_are_422(api: httpx.Client) -> None:
    """A key with characters outside [A-Za-z0-9_-:] or over 128 characters is a 422."""
    for key in ("has space", "x" * 129, "semi;colon"):
        answer = api.post("/v1/workflows", json=quick_workflow(), headers={"Idempotency-Key": key})
        assert answer.status_code == 422
        assert answer.json()["error"]["details"][0]["loc"] == ["header", "Idempotency-Key"]


def test_concurrent_duplicates_create_once(api: httpx.Client) -> None:
    """Eight identical creates at once make one workflow; all get the same answer."""
    headers = {"Idempotency-Key": "burst"}
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda _: api.post("/v1/workflows", json=quick_workflow("burst"), headers=headers),
                range(8),
            )
        )
    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert {answer.json()["version"] for answer in answers} == {1}
    assert sum(answer.headers.get("Idempotent-Replay") == "true" for answer in answers) == 7


def test_request_ids_are_answered_and_client_ids_kept(api: httpx.Client) -> None:
    """Every answer has X-Request-Id; a sane client id is echoed, a strange one replaced."""
    plain = api.get("/v1/runs")
    assert plain.headers["X-Request-Id"].startswith("req_")
    assert plain.json()["request_id"] == plain.headers["X-Request-Id"]
    mine = api.get("/v1/runs", headers={"X-Request-Id": "trace-42"})
    assert mine.headers["X-Request-Id"] == "trace-42"
    odd = api.get("/v1/runs", headers={"X-Request-Id": "bad id!"})
    assert odd.headers["X-Request-Id"].startswith("req_")
    assert api.get("/v1/missing").headers["X-Request-Id"].startswith("req_")


def test_replay_survives_a_restart(tmp_path: Path) -> None:
    """A key's stored answer is replayed by a restarted server on the same database."""
    server = new_server(tmp_path)
    key = server.key("restart")
    headers = {"Idempotency-Key": "across-restart"}
    task = {"machine_id": "local-terminal", "task": "once only"}
    server.start()
    try:
        with server.client(key) as api:
            first = api.post("/v1/runs", json=task, headers=headers)
            assert first.status_code == 200
    finally:
        server.stop()
    server.start()
    try:
        with server.client(key) as api:
            again = api.post("/v1/runs", json=task, headers=headers)
            assert again.headers["Idempotent-Replay"] == "true"
            assert again.json()["id"] == first.json()["id"]
            reused = api.post("/v1/runs", json=task | {"task": "other"}, headers=headers)
            assert reused.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
            assert len(api.get("/v1/runs", params={"type": "task"}).json()["data"]) == 1
    finally:
        server.stop()
