"""Fuzz every route from the server's own OpenAPI document (schemathesis), a bounded number of times.

Generated requests, valid by the schema and deliberately invalid, must never get
a 5xx, and every answer must have a documented status, content type and shape.
(The cases are driven with Hypothesis directly: schemathesis' own pytest
plugin does not load under this pytest version.)
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from tests.api.conftest import Server

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 10}
# Acting on machines runs real commands, and registering them builds machines:
# not something to hand random input. Everything else is fuzzed.
NOT_FUZZED = {"POST /v1/machines", "POST /v1/machines/{machine_id}/actions"}
CORE = {
    "POST /v1/workflows",
    "GET /v1/workflows",
    "GET /v1/workflows/{workflow_id}",
    "PUT /v1/workflows/{workflow_id}",
    "DELETE /v1/workflows/{workflow_id}",
    "POST /v1/workflows/{workflow_id}/runs",
    "POST /v1/workflows/runs",
    "POST /v1/workflows/validate",
    "POST /v1/runs",
    "GET /v1/runs",
    "GET /v1/runs/{run_id}",
    "POST /v1/runs/{run_id}/cancel",
    "POST /v1/runs/{run_id}/resume",
    "GET /v1/runs/{run_id}/events",
}


@pytest.fixture(scope="module")
def operations(server: Server) -> list[Any]:
    """Every operation of the running server's OpenAPI document."""
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    results = list(schema.get_all_operations())
    # An operation schemathesis cannot read is a broken document: fail, do not skip it.
    assert all(isinstance(result, Ok) for result in results), results
    found = [result.ok() for result in results if isinstance(result, Ok)]
    assert {operation.label for operation in found} >= CORE
    return [operation for operation in found if operation.label not in NOT_FUZZED]


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=lambda mode: mode.value)
def test_no_server_errors_and_answers_match_the_schema(
    server: Server, operations: list[Any], mode: GenerationMode
) -> None:
    """Each operation answers generated requests with documented, well-formed answers."""
    headers = {"X-API-Key": server.key(f"fuzz-{mode.value}")}
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES[mode],
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            case.call_and_validate(base_url=server.url, headers=headers, checks=CHECKS, timeout=10)

        check()
