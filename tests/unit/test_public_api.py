"""The public Python API stays what it is unless a change says so on purpose."""

from __future__ import annotations

import cuaflow
from cuaflow import errors


def test_public_names_are_pinned() -> None:
    """cuaflow exports exactly these names; adding or removing one is a deliberate API change."""
    assert sorted(cuaflow.__all__) == sorted(
        [
            "AgentError",
            "ConditionError",
            "CuaflowError",
            "InvalidState",
            "Issue",
            "MachineError",
            "NotFound",
            "StoreError",
            "StoreUnavailable",
            "TemplateError",
            "TemplateLimitExceeded",
            "Workflow",
            "WorkflowInvalid",
            "__version__",
            "parse_workflow",
            "workflow_document",
            "workflow_json_schema",
        ]
    )
    for name in cuaflow.__all__:
        assert hasattr(cuaflow, name), name


def test_every_error_is_a_cuaflow_error_with_a_code() -> None:
    """Each exception class in cuaflow.errors derives from CuaflowError and has a stable code."""
    classes = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, Exception)
    ]
    assert len(classes) >= 10
    for cls in classes:
        assert issubclass(cls, cuaflow.CuaflowError), cls
        assert cls.code.isupper(), cls


def test_error_tree_is_described_in_one_docstring() -> None:
    """The errors module's docstring names every exception class (the one place to learn them)."""
    doc = errors.__doc__ or ""
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, Exception):
            assert value.__name__ in doc, value.__name__
