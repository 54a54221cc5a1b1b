"""Run routes against a real server: task runs, listing, cancel, resume and their races."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.api.helpers import (
    approval_workflow,
    bash_task,
    create_workflow,
    quick_workflow,
    start_run,
    wait_for,
)

TASK_RUN = {"machine_id": "local-terminal", "task": "Open the billing page", "max_steps": 5}


def test_task_run_is_created_queued_with_every_field(api: httpx.Client) -> None:
    """POST /v1/runs answers an agent.run with the reference's fields, then it runs to an end."""
    answer = api.post("/v1/runs", json=TASK_RUN | {"metadata": {"team": "ops"}})
    assert answer.status_code == 200, answer.text
    run = answer.json()
    assert run["object"] == "agent.run"
    assert run["id"].startswith("run_")
    assert run["status"] == "queued"
    assert (run["task"], run["machine_id"], run["max_steps"]) == (
        "Open the billing page",
        "local-terminal",
        5,
    )
    assert (run["cua_version"], run["on_awaiting_human"]) == ("v3", "pause")
    assert run["result"] is None
    assert run["webhook_secret"] is None
    assert run["request_id"] == answer.headers["X-Request-Id"]
    finished = wait_for(api, run["id"])
    assert finished["finished_at"] is not None
    assert finished["result"]["passed"] is False  # no model and no actions: it cannot pass


def test_task_run_body_is_checked(api: httpx.Client) -> None:
    """machine_id and task are required, unknown fields and bad values are 422 naming the field."""
    missing = api.post("/v1/runs", json={"task": "x"})
    assert missing.status_code == 422
    assert missing.json()["error"]["details"] == [{"loc": ["machine_id"], "msg": "field required"}]
    unknown = api.post("/v1/runs", json=TASK_RUN | {"speed": "fast"})
    assert unknown.json()["error"]["details"] == [{"loc": ["speed"], "msg": "unknown field"}]
    bad = api.post("/v1/runs", json=TASK_RUN | {"cua_version": "v2"})
    assert bad.json()["error"]["details"][0]["loc"] == ["cua_version"]
    wrong_type = api.post("/v1/runs", json=[1, 2])
    assert wrong_type.status_code == 422


def test_webhook_secret_only_in_the_create_answer(api: httpx.Client) -> None:
    """A run with a webhook_url shows its secret when created and never again."""
    saved = create_workflow(api, quick_workflow("hooked"))
    body = {"webhook_url": "http://127.0.0.1:9/hooks/cuaflow"}
    created = start_run(api, saved["id"], **body)
    assert created["webhook_url"] == body["webhook_url"]
    assert created["webhook_secret"].startswith("whsec_")
    task = api.post("/v1/runs", json=TASK_RUN | body).json()
    assert task["webhook_url"] == body["webhook_url"]
    assert (task["webhook_secret"] or "whsec_").startswith("whsec_")
    assert api.get(f"/v1/runs/{task['id']}").json()["webhook_secret"] is None
    refused = api.post(f"/v1/workflows/{saved['id']}/runs", json={"webhook_url": "ftp://x/y"})
    assert refused.status_code == 422
    assert refused.json()["error"]["details"][0]["loc"] == ["webhook_url"]
    again = api.get(f"/v1/runs/{created['id']}").json()
    assert again["webhook_secret"] is None
    listed = api.get("/v1/runs").json()["data"]
    assert all(run["webhook_secret"] is None for run in listed)


def test_list_filters_and_pages(api: httpx.Client) -> None:
    """GET /v1/runs filters by status, type and workflow, newest first, and pages with a cursor."""
    quick = create_workflow(api, quick_workflow("list-quick"))
    waiting = create_workflow(api, approval_workflow("list-wait"))
    done = [start_run(api, quick["id"])["id"] for _ in range(3)]
    paused = start_run(api, waiting["id"])["id"]
    for run_id in done:
        wait_for(api, run_id)
    wait_for(api, paused, {"awaiting_human"})

    everything = api.get("/v1/runs", params={"type": "workflow"}).json()["data"]
    assert [run["id"] for run in everything] == [paused, *reversed(done)]
    awaiting = api.get("/v1/runs", params={"status": "awaiting_human"}).json()["data"]
    assert [run["id"] for run in awaiting] == [paused]
    by_workflow = api.get("/v1/runs", params={"workflow_id": quick["id"]}).json()["data"]
    assert sorted(run["id"] for run in by_workflow) == sorted(done)
    page = api.get("/v1/runs", params={"limit": 2, "type": "workflow"}).json()
    assert page["has_more"] is True
    assert len(page["data"]) == 2
    rest = api.get(
        "/v1/runs", params={"type": "workflow", "starting_after": page["data"][-1]["id"]}
    ).json()
    assert [run["id"] for run in page["data"] + rest["data"]] == [paused, *reversed(done)]
    assert rest["has_more"] is False
    reference = api.get("/v1/workflows/runs").json()["data"]
    assert {run["object"] for run in reference} == {"workflow.run"}


def test_list_rejects_bad_filters(api: httpx.Client) -> None:
    """Unknown status or type filters are 400 with valid_options; bad limits 400 INVALID_LIMIT."""
    status = api.get("/v1/runs", params={"status": "paused"})
    assert status.status_code == 400
    error = status.json()["error"]
    assert error["code"] == "INVALID_STATUS_FILTER"
    assert "awaiting_human" in error["valid_options"]
    kind = api.get("/v1/runs", params={"type": "batch"}).json()["error"]
    assert (kind["code"], kind["valid_options"]) == ("INVALID_TYPE_FILTER", ["task", "workflow"])
    limit = api.get("/v1/runs", params={"limit": 1000}).json()["error"]
    assert (limit["code"], limit["actual"]) == ("INVALID_LIMIT", "1000")
    cursor = api.get("/v1/runs", params={"starting_after": "run_ffffffffffffffff"}).json()
    assert cursor["error"]["code"] == "INVALID_CURSOR"


def test_workflow_run_shows_steps_and_links_task_runs(api: httpx.Client) -> None:
    """A workflow run binds its steps; each task step's task run links back to it."""
    saved = create_workflow(api, {"name": "linked", "steps": [bash_task("hello", "echo hi")]})
    run = wait_for(api, start_run(api, saved["id"])["id"])
    assert run["status"] == "succeeded"
    assert run["steps"]["hello"]["passed"] is True
    assert run["steps_completed"] == 1
    assert run["spent_cents"] == 5
    task_run = api.get(f"/v1/runs/{run['steps']['hello']['run_id']}").json()
    assert task_run["object"] == "agent.run"
    assert (task_run["parent_run_id"], task_run["step_id"]) == (run["id"], "hello")
    assert task_run["status"] == "succeeded"
    assert task_run["cost_cents"] == 5
    children = api.get("/v1/runs", params={"type": "task"}).json()["data"]
    assert task_run["id"] in [child["id"] for child in children]


def test_cancel_queued_waiting_and_running_runs(api: httpx.Client) -> None:
    """Cancel ends an awaiting or running run as cancelled; a finished run answers 409."""
    waiting = create_workflow(api, approval_workflow("cancel-wait"))
    paused = start_run(api, waiting["id"])["id"]
    wait_for(api, paused, {"awaiting_human"})
    answer = api.post(f"/v1/runs/{paused}/cancel")
    assert answer.status_code == 200
    assert answer.json()["status"] == "cancelled"
    assert answer.json()["error"]["code"] == "CANCELLED"

    slow = create_workflow(api, {"name": "slow", "steps": [bash_task("nap", "sleep 30")]})
    running = start_run(api, slow["id"])["id"]
    wait_for(api, running, {"running"})
    stopped = api.post(f"/v1/workflows/runs/{running}/cancel")
    assert stopped.status_code == 200
    assert stopped.json()["status"] == "cancelled"

    again = api.post(f"/v1/runs/{paused}/cancel")
    assert again.status_code == 409
    error = again.json()["error"]
    assert (error["code"], error["type"], error["current_state"]) == (
        "INVALID_STATE",
        "state_error",
        "cancelled",
    )
    assert "running" in error["allowed_from"]


def test_resume_answers_the_approval(api: httpx.Client) -> None:
    """Resume from awaiting_human continues the run; approved=false rejects the step."""
    saved = create_workflow(api, approval_workflow("resume-me"))
    approved = start_run(api, saved["id"])["id"]
    wait_for(api, approved, {"awaiting_human"})
    answer = api.post(f"/v1/runs/{approved}/resume", json={"note": "looks good"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] in {"running", "succeeded"}
    assert wait_for(api, approved)["output"] == {"approved": True}

    rejected = start_run(api, saved["id"])["id"]
    wait_for(api, rejected, {"awaiting_human"})
    api.post(f"/v1/workflows/runs/{rejected}/resume", json={"approved": False})
    final = wait_for(api, rejected)
    assert (final["status"], final["error"]["code"]) == ("failed", "APPROVAL_REJECTED")

    again = api.post(f"/v1/runs/{rejected}/resume")
    assert again.status_code == 409
    error = again.json()["error"]
    assert (error["code"], error["current_state"]) == ("NOT_AWAITING_HUMAN", "failed")
    unknown = api.post(f"/v1/runs/{approved}/resume", json={"approve": True})
    assert unknown.status_code == 422


def test_two_concurrent_resumes_one_wins(api: httpx.Client) -> None:
    """Of two resumes sent at once, exactly one answers 200 and the other 409."""
    saved = create_workflow(api, approval_workflow("race"))
    for _ in range(5):
        run_id = start_run(api, saved["id"])["id"]
        wait_for(api, run_id, {"awaiting_human"})
        with ThreadPoolExecutor(2) as pool:
            path = f"/v1/runs/{run_id}/resume"
            answers = list(pool.map(api.post, [path, path]))
        codes = sorted(answer.status_code for answer in answers)
        assert codes == [200, 409]
        loser = next(answer for answer in answers if answer.status_code == 409)
        assert loser.json()["error"]["code"] == "NOT_AWAITING_HUMAN"
        assert wait_for(api, run_id)["status"] == "succeeded"


def test_cancel_and_resume_race_ends_consistently(api: httpx.Client) -> None:
    """A cancel and a resume sent together: the winner decides, the run never flips after."""
    saved = create_workflow(api, approval_workflow("cancel-race"))
    for _ in range(5):
        run_id = start_run(api, saved["id"])["id"]
        wait_for(api, run_id, {"awaiting_human"})
        with ThreadPoolExecutor(2) as pool:
            cancel = pool.submit(api.post, f"/v1/runs/{run_id}/cancel")
            resume = pool.submit(api.post, f"/v1/runs/{run_id}/resume")
        final = wait_for(api, run_id)
        assert cancel.result().status_code in {200, 409}
        assert resume.result().status_code in {200, 409}
        if resume.result().status_code == 409:
            assert final["status"] == "cancelled"
        if cancel.result().status_code == 409:
            assert final["status"] == "succeeded"
        assert api.get(f"/v1/runs/{run_id}").json()["status"] == final["status"]


def test_unknown_runs_are_404_on_every_route(api: httpx.Client) -> None:
    """Every run route with an unknown id answers 404 RUN_NOT_FOUND."""
    for method, path in [
        ("GET", "/v1/runs/run_0123456789abcdef"),
        ("POST", "/v1/runs/run_0123456789abcdef/cancel"),
        ("POST", "/v1/runs/wfr_0123456789abcdef/resume"),
        ("GET", "/v1/runs/wfr_0123456789abcdef/events"),
        ("GET", "/v1/workflows/runs/wfr_0123456789abcdef"),
    ]:
        answer = api.request(method, path)
        assert answer.status_code == 404, (method, path)
        assert answer.json()["error"]["code"] == "RUN_NOT_FOUND"
    assert api.get("/v1/nothing/here").json()["error"]["code"] == "NOT_FOUND"
    assert api.patch("/v1/runs").status_code == 405


def test_run_metadata_round_trips(api: httpx.Client) -> None:
    """Metadata given when a run starts is kept and read back on both kinds of run."""
    saved = create_workflow(api, quick_workflow("meta"))
    created = start_run(api, saved["id"], metadata={"team": "finance"})
    assert created["metadata"] == {"team": "finance"}
    assert api.get(f"/v1/runs/{created['id']}").json()["metadata"] == {"team": "finance"}
    task = api.post("/v1/runs", json=TASK_RUN | {"metadata": {"n": 1}}).json()
    assert api.get(f"/v1/runs/{task['id']}").json()["metadata"] == {"n": 1}


def test_explicit_nulls_mean_defaults(api: httpx.Client) -> None:
    """Bodies that send every optional field, unset ones as null (as generated SDKs do), work."""
    saved = create_workflow(api, quick_workflow("nulls"))
    nulls = dict.fromkeys(
        ("inputs", "machine_id", "task", "cua_version", "instructions", "system_prompt",
         "max_steps", "budget_cents", "max_iterations", "deadline_seconds",
         "on_awaiting_human", "awaiting_human_timeout_seconds", "webhook_url", "metadata",
         "version"),
    )  # fmt: skip
    run = api.post(f"/v1/workflows/{saved['id']}/runs", json=nulls)
    assert run.status_code == 200, run.text
    assert (run.json()["on_awaiting_human"], run.json()["inputs"]) == ("pause", {})
    task = api.post(
        "/v1/runs", json=TASK_RUN | {"cua_version": None, "max_steps": None, "metadata": None}
    )
    assert task.status_code == 200, task.text
    assert (task.json()["cua_version"], task.json()["max_steps"]) == ("v3", 50)
    missing = api.post("/v1/runs", json={"machine_id": None, "task": "x"})
    assert missing.json()["error"]["details"] == [{"loc": ["machine_id"], "msg": "field required"}]


def test_nul_characters_are_refused_where_they_are(api: httpx.Client) -> None:
    """A NUL character anywhere in a body (PostgreSQL cannot store it) is a 422 at its location."""
    task = api.post("/v1/runs", json=TASK_RUN | {"metadata": {"team": "a\u0000b"}})
    assert task.status_code == 422
    assert task.json()["error"]["details"][0]["loc"] == ["metadata", "team"]
    key = api.post("/v1/runs", json=TASK_RUN | {"metadata": {"bad\u0000key": 1}})
    assert key.json()["error"]["details"][0]["loc"] == ["metadata", "bad\u0000key"]
    document = quick_workflow("nul") | {"steps": [{"id": "s", "type": "fail", "message": "\u0000"}]}
    workflow = api.post("/v1/workflows", json=document)
    assert workflow.json()["error"]["details"][0]["loc"] == ["steps", 0, "message"]
    escaped = api.post("/v1/runs", json=TASK_RUN | {"task": "a literal \\u0000 is fine"})
    assert escaped.status_code == 200
