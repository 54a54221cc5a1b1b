"""The JSON Schema (draft 2020-12) of workflow documents, for editors and linters.

:func:`workflow_json_schema` starts from the canonical models' own schema and
widens it to every spelling :mod:`cuaflow.dsl.normalize` accepts: the brief's
aliases (human_approval ``instruction``, succeed ``message``, fail ``error``,
loop/retry ``steps``), parallel branches written as ``{steps: [...]}``, the
seed conditions ``{type: field_equals, field, value}``, the reference's
``definition: {steps, output, guards}``, guard keys at the top level and an
integer ``version``.

The schema checks shapes and types. Rules that span steps (unique ids,
template references, the 200-step and depth limits) are only checked by
:func:`cuaflow.dsl.parse.parse_workflow`, which stays the authority; so does
its leniency where pydantic coerces (``"20"`` for ``20``), which the schema
does not copy so that editors steer authors to the plain spelling.
"""

from __future__ import annotations

import copy
from typing import Any

from cuaflow.dsl.models import STEP_TYPES, Guards, Workflow
from cuaflow.dsl.normalize import SEED_CONDITION_TYPES
from cuaflow.dsl.validate import MAX_BRANCHES, MAX_LOOP_ITERATIONS, MAX_RETRY_ATTEMPTS

SCHEMA_ID = "https://cuaflow.dev/schema/workflow-2026-06-01.json"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

Schema = dict[str, Any]

_GUARD_NAMES = tuple(Guards.model_fields)
_UNARY_OPS = {"truthy", "falsy", "exists"}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/$defs/{name}"}


def workflow_json_schema() -> Schema:
    """The JSON Schema of a workflow document in any spelling cuaflow accepts."""
    base = Workflow.model_json_schema(by_alias=True, mode="validation")
    unions: dict[str, dict[str, str]] = {}
    defs = {name: _replace_unions(d, unions) for name, d in base.pop("$defs").items()}
    base = _replace_unions(base, unions)
    defs["Step"] = _tagged_union("type", {t: {"$ref": ref} for t, ref in unions["Step"].items()})
    defs["Action"] = _tagged_union("type", {t: {"$ref": r} for t, r in unions["Action"].items()})
    _require_template_strings(defs, set(unions["Action"].values()))
    _add_conditions(defs, unions["Condition"])
    _add_step_aliases(defs)
    _add_step_rules(defs)
    return {
        "$schema": DRAFT_2020_12,
        "$id": SCHEMA_ID,
        "title": "cuaflow workflow (dsl_version 2026-06-01)",
        **_document(base),
        "$defs": dict(sorted(defs.items())),
    }


def _replace_unions(node: Any, unions: dict[str, dict[str, str]]) -> Any:
    """Swap pydantic's inline discriminated unions for references to shared definitions.

    ``discriminator`` is an OpenAPI keyword that JSON Schema ignores; the shared
    definitions use ``if``/``then`` on the tag instead, which gives editors an
    error about the one variant the tag names rather than about all of them.
    Each union's tag-to-definition mapping is recorded in ``unions`` by name.
    """
    if isinstance(node, list):
        return [_replace_unions(item, unions) for item in node]
    if not isinstance(node, dict):
        return node
    discriminator = node.get("discriminator")
    if isinstance(discriminator, dict):
        mapping: dict[str, str] = discriminator["mapping"]
        if discriminator["propertyName"] == "op":
            name = "Condition"
        else:
            name = "Step" if set(mapping) == set(STEP_TYPES) else "Action"
        unions[name] = mapping
        return {"$ref": f"#/$defs/{name}"}
    return {key: _replace_unions(value, unions) for key, value in node.items()}


def _tagged_union(tag: str, variants: dict[str, Schema]) -> Schema:
    return {
        "type": "object",
        "required": [tag],
        "properties": {tag: {"enum": list(variants)}},
        "allOf": [
            {"if": {"properties": {tag: {"const": value}}, "required": [tag]}, "then": schema}
            for value, schema in variants.items()
        ],
    }


def _require_template_strings(defs: dict[str, Schema], action_refs: set[str]) -> None:
    """An action's numeric field may be a string only when it is a template."""
    for ref in action_refs:
        for prop in defs[ref.rsplit("/", 1)[1]]["properties"].values():
            options = prop.get("anyOf", [])
            if any(o.get("type") in ("number", "integer") for o in options):
                for option in options:
                    if option == {"type": "string"}:
                        option["pattern"] = r"\{\{"


def _add_conditions(defs: dict[str, Schema], mapping: dict[str, str]) -> None:
    """Conditions: canonical ``{op, ...}``, or spelt with ``type`` as the brief does."""
    canonical = {op: {"$ref": ref} for op, ref in mapping.items()}
    by_type: dict[str, Schema] = {}
    for ref in sorted(set(mapping.values())):
        name = ref.rsplit("/", 1)[1]
        definition = defs[name]
        renamed = copy.deepcopy(definition)
        renamed["properties"] = {
            ("type" if key == "op" else key): value
            for key, value in definition["properties"].items()
        }
        renamed["required"] = ["type" if key == "op" else key for key in definition["required"]]
        renamed["description"] = f"{definition['description']} (`op` spelt `type`)"
        defs[f"{name}ByType"] = renamed
        for op, target in mapping.items():
            if target == ref:
                by_type[op] = _ref(f"{name}ByType")
    for seed_type, (op, _) in SEED_CONDITION_TYPES.items():
        unary = op in _UNARY_OPS
        by_type[seed_type] = _ref("SeedUnaryCondition" if unary else "SeedCompareCondition")
    defs["SeedCompareCondition"] = _seed_condition(unary=False)
    defs["SeedUnaryCondition"] = _seed_condition(unary=True)
    defs["Condition"] = {
        "description": "A condition: {op, ...} (reference) or {type, field, value} (brief).",
        "type": "object",
        "if": {"required": ["op"]},
        "then": _tagged_union("op", canonical),
        "else": _tagged_union("type", by_type),
    }


def _seed_condition(*, unary: bool) -> Schema:
    kinds = [k for k, (op, _) in SEED_CONDITION_TYPES.items() if (op in _UNARY_OPS) == unary]
    properties: Schema = {
        "type": {"enum": kinds},
        "field": {
            "type": "string",
            "minLength": 1,
            "description": "A path such as 'start_up.status', read as '{{start_up.status}}'.",
        },
    }
    if not unary:
        properties["value"] = {"description": "The value to compare the field with."}
    return {
        "description": f"The brief's {'test' if unary else 'comparison'} condition.",
        "type": "object",
        "properties": properties,
        "required": ["type", "field"],
        "additionalProperties": False,
    }


def _add_step_aliases(defs: dict[str, Schema]) -> None:
    _alias(defs["HumanApprovalStep"], "instruction", "message")
    _alias(defs["SucceedStep"], "message", "output")
    _alias(defs["FailStep"], "error", "message")
    _alias(defs["LoopStep"], "steps", "body")
    _alias(defs["RetryStep"], "steps", "body")
    branch_object = {
        "description": "A branch written as an object, as the reference does.",
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "steps": {"type": "array", "items": _ref("Step")},
        },
        "required": ["steps"],
        "additionalProperties": False,
    }
    branches = defs["ParallelStep"]["properties"]["branches"]
    branches["items"] = {"anyOf": [branches["items"], branch_object]}


def _alias(definition: Schema, alias: str, field: str) -> None:
    """Accept ``alias`` in place of ``field``, never both; required if ``field`` was."""
    properties = definition["properties"]
    properties[alias] = {**properties[field], "description": f"Alias of `{field}`."}
    rules = definition.setdefault("allOf", [])
    if field in definition.get("required", []):
        definition["required"].remove(field)
        rules.append({"oneOf": [{"required": [field]}, {"required": [alias]}]})
    else:
        rules.append({"not": {"required": [field, alias]}})


def _add_step_rules(defs: dict[str, Schema]) -> None:
    """Simple shape rules the validator checks that a schema can say too."""
    loop = defs["LoopStep"]
    loop["properties"]["max_iterations"]["anyOf"][0] |= {
        "minimum": 1,
        "maximum": MAX_LOOP_ITERATIONS,
    }
    modes = ("count", "while", "for_each")
    loop.setdefault("allOf", []).append(
        {
            "oneOf": [
                {"required": [mode], "properties": {mode: {"not": {"type": "null"}}}}
                for mode in modes
            ]
        }
    )
    loop["dependentRequired"] = {"as": ["for_each"]}
    defs["RetryStep"]["properties"]["max_attempts"] |= {
        "minimum": 1,
        "maximum": MAX_RETRY_ATTEMPTS,
    }
    defs["ParallelStep"]["properties"]["branches"]["maxItems"] = MAX_BRANCHES
    check = defs["VerifyCheck"]
    needs = {"command": "command", "port": "port", "text": "text", "url": "pattern"}
    check["allOf"] = [
        {
            "if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
            "then": {"required": [field], "properties": {field: {"not": {"type": "null"}}}},
        }
        for kind, field in needs.items()
    ]


def _document(base: Schema) -> Schema:
    """The top level: its fields directly, or inside ``definition``, never both."""
    properties: Schema = dict(base["properties"])
    properties["version"] = {
        "anyOf": [{"type": "string", "maxLength": 64}, {"type": "integer"}, {"type": "null"}],
        "description": "The workflow's version label, such as '1.0.0' (an integer becomes text).",
    }
    guard_props = Guards.model_json_schema()["properties"]
    for name in _GUARD_NAMES:
        properties[name] = {**guard_props[name], "description": f"Shorthand for guards.{name}."}
    bare_guard_rules = {
        name: {"properties": {"guards": {"not": {"required": [name]}}}} for name in _GUARD_NAMES
    }
    definition = {
        "description": "The reference's nesting: any top-level field may sit here instead.",
        "type": "object",
        "properties": copy.deepcopy(properties),
        "additionalProperties": False,
        "dependentSchemas": copy.deepcopy(bare_guard_rules),
    }
    once: dict[str, Schema] = {
        name: {"properties": {"definition": {"not": {"required": [name]}}}} for name in properties
    }
    for name, rule in bare_guard_rules.items():
        once[name] = {"allOf": [once[name], rule]}
    required_somewhere = [
        {
            "anyOf": [
                {"required": [name]},
                {"required": ["definition"], "properties": {"definition": {"required": [name]}}},
            ]
        }
        for name in base["required"]
    ]
    return {
        "description": base["description"].replace(" in canonical form", ""),
        "type": "object",
        "properties": {**properties, "definition": definition},
        "additionalProperties": False,
        "dependentSchemas": once,
        "allOf": required_somewhere,
    }
