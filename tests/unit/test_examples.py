"""Tests for examples/: every example is a valid workflow, and the brief's is the brief's."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cuaflow.dsl.models import Step, TaskStep, Workflow
from cuaflow.dsl.parse import parse_workflow
from cuaflow.dsl.references import walk_steps

REPO = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = REPO / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.json"))
# CI checks the shared folder out beside the repository; /work/shared may not exist there.
SEED = REPO.parent / "shared" / "seed" / "workflows-api-tutorial.txt"
BRIEF_EXAMPLE = EXAMPLES_DIR / "setup-and-test.json"
STEP_TYPE_EXAMPLES = (
    *("task", "assert", "if", "loop", "parallel", "human_approval", "retry", "succeed", "fail"),
    *("guards", "reference-form"),
)


def steps_of(workflow: Workflow) -> list[Step]:
    return [site.step for site in walk_steps(workflow.steps)]


def test_there_is_one_example_per_step_type() -> None:
    """Each step type, guards and the reference spelling have their own example file."""
    names = {path.stem for path in EXAMPLES}
    assert set(STEP_TYPE_EXAMPLES) | {"setup-and-test", "setup-and-test-scripted"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_parses(path: Path) -> None:
    """parse_workflow accepts every example file as it is on disk."""
    assert parse_workflow(path.read_bytes()).steps


@pytest.mark.parametrize("path", [p for p in EXAMPLES if p != BRIEF_EXAMPLE], ids=lambda p: p.name)
def test_every_task_step_runs_without_a_model(path: Path) -> None:
    """Outside the brief's own example, every task step carries scripted actions."""
    workflow = parse_workflow(path.read_bytes())
    tasks = [step for step in steps_of(workflow) if isinstance(step, TaskStep)]
    assert tasks
    assert [step.id for step in tasks if not step.actions] == []


@pytest.mark.parametrize("stem", STEP_TYPE_EXAMPLES)
def test_each_step_type_example_uses_its_step_type(stem: str) -> None:
    """The example named after a step type contains at least one step of that type."""
    workflow = parse_workflow((EXAMPLES_DIR / f"{stem}.json").read_bytes())
    if stem == "guards":
        assert workflow.guards.budget_cents is not None
        assert workflow.guards.max_iterations is not None
        assert workflow.guards.deadline_seconds is not None
    elif stem != "reference-form":
        assert stem in {step.type for step in steps_of(workflow)}


def test_loop_example_shows_every_loop_form() -> None:
    """The loop examples together use count, while, for_each and `as`."""
    forms: set[str] = set()
    for path in EXAMPLES:
        for step in steps_of(parse_workflow(path.read_bytes())):
            if step.type == "loop":
                fields = step.model_dump(by_alias=True, exclude_none=True)
                forms |= fields.keys() & {"count", "while", "for_each", "as"}
    assert forms == {"count", "while", "for_each", "as"}


def test_reference_form_example_uses_the_reference_spelling() -> None:
    """reference-form.json nests steps and output in `definition` and uses reference inputs."""
    raw = json.loads((EXAMPLES_DIR / "reference-form.json").read_text())
    assert {"steps", "output"} <= raw["definition"].keys()
    assert "steps" not in raw
    assert all({"type", "required"} <= entry.keys() for entry in raw["inputs_schema"].values())


def brief_body() -> Any:
    text = SEED.read_text()
    match = re.search(r"-d '(.*?)'", text, re.DOTALL)
    assert match is not None, "the brief has no curl -d '...' body"
    return json.loads(match.group(1))


@pytest.mark.skipif(not SEED.exists(), reason=f"the brief is not checked out at {SEED}")
def test_brief_example_is_the_briefs_json() -> None:
    """examples/setup-and-test.json holds the brief's curl body: same fields, same order."""
    ours = json.loads(BRIEF_EXAMPLE.read_text())
    # json.dumps keeps key order, so this compares the order of fields too.
    assert json.dumps(ours) == json.dumps(brief_body())


def test_scripted_example_keeps_the_briefs_steps() -> None:
    """The scripted setup-and-test has the brief's step ids, types and task texts, in order."""
    brief = parse_workflow(BRIEF_EXAMPLE.read_bytes())
    scripted = parse_workflow((EXAMPLES_DIR / "setup-and-test-scripted.json").read_bytes())

    def outline(workflow: Workflow) -> list[tuple[str, str, str | None]]:
        return [
            (step.id, step.type, step.task if isinstance(step, TaskStep) else None)
            for step in workflow.steps
        ]

    assert outline(scripted) == outline(brief)
    assert scripted.inputs_schema is not None
    assert scripted.inputs_schema["properties"]["port"]["default"] == 8080


def test_readme_describes_every_example() -> None:
    """examples/README.md names every example file, so none goes undocumented."""
    readme = (EXAMPLES_DIR / "README.md").read_text()
    assert [path.name for path in EXAMPLES if path.name not in readme] == []
    assert "cuaflow run examples/loop.json" in readme
