"""cuaflow: a self-hostable, durable workflow engine for computer-use agents.

The public Python API is small; everything else is reached through the
``cuaflow`` command or the HTTP API. ``tests/unit/test_public_api.py`` pins it.
"""

from cuaflow.dsl.models import Workflow
from cuaflow.dsl.parse import parse_workflow, workflow_document
from cuaflow.dsl.schema import workflow_json_schema
from cuaflow.errors import (
    AgentError,
    ConditionError,
    CuaflowError,
    InvalidState,
    Issue,
    MachineError,
    NotFound,
    StoreError,
    StoreUnavailable,
    TemplateError,
    TemplateLimitExceeded,
    WorkflowInvalid,
)

__version__ = "0.1.0"

__all__ = [
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
