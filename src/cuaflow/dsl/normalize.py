"""Rewrite any accepted spelling of a workflow into the canonical (reference) one.

cuaflow accepts the brief's spelling (top-level ``steps``, ``version: "1.0.0"``,
``{type: field_equals, field, value}`` conditions, human_approval
``instruction``, succeed ``message``, loop/retry ``steps``) and the reference
spelling (``definition: {steps, output}``, ``{op, left, right}`` conditions,
``body``, ``message``). :func:`normalize` turns either into one canonical
document, and records where each renamed part came from in a :class:`LocMap` so
that every error can point at the user's own JSON location.

The function never raises on malformed input: whatever it does not recognise it
leaves in place for the models to reject with a precise message.
"""

from __future__ import annotations

from typing import Any

from cuaflow.errors import Issue, Loc

# The brief's condition types and the canonical op each becomes; "negated" ones
# wrap the op in {op: not}.
SEED_CONDITION_TYPES: dict[str, tuple[str, bool]] = {
    "field_equals": ("eq", False),
    "field_not_equals": ("ne", False),
    "field_contains": ("contains", False),
    "field_not_contains": ("contains", True),
    "field_exists": ("exists", False),
    "field_not_exists": ("exists", True),
    "field_gt": ("gt", False),
    "field_gte": ("gte", False),
    "field_lt": ("lt", False),
    "field_lte": ("lte", False),
    "field_truthy": ("truthy", False),
    "field_falsy": ("falsy", False),
}
_UNARY = {"truthy", "falsy", "exists"}
_GUARD_NAMES = ("budget_cents", "max_iterations", "deadline_seconds")
_BODY_STEP_TYPES = {"loop", "retry"}
# Step fields holding a condition, by step type.
_CONDITION_FIELDS: dict[str, tuple[str, ...]] = {
    "assert": ("condition",),
    "if": ("condition",),
    "loop": ("while",),
    "retry": ("until",),
}
# Step aliases: (step type, alias, canonical field).
_STEP_ALIASES = (
    ("human_approval", "instruction", "message"),
    ("succeed", "message", "output"),
    ("fail", "error", "message"),
)


class LocMap:
    """Maps canonical JSON locations back to where they were in the user's document.

    A move says what a canonical path's last segment was in the original; the
    segments before it are translated by their own moves, so moves compose
    through any depth of renamed containers.
    """

    def __init__(self) -> None:
        self._tails: dict[Loc, Loc] = {}
        self._absolute: dict[Loc, Loc] = {}

    def move(self, canonical: Loc, tail: Loc) -> None:
        """Record that the last segment of ``canonical`` was written as ``tail``."""
        self._tails[canonical] = tail

    def move_to(self, canonical: Loc, original: Loc) -> None:
        """Record that ``canonical`` was written at ``original`` (a path from the root)."""
        self._absolute[canonical] = original

    def original(self, canonical: Loc) -> Loc:
        """The user's location for a canonical one."""
        out: list[str | int] = []
        for index, part in enumerate(canonical):
            key = canonical[: index + 1]
            if key in self._absolute:
                out = list(self._absolute[key])
            elif key in self._tails:
                out.extend(self._tails[key])
            else:
                out.append(part)
        return tuple(out)


class _Normalizer:
    def __init__(self) -> None:
        self.locs = LocMap()
        self.issues: list[Issue] = []

    def document(self, raw: dict[str, Any]) -> dict[str, Any]:
        doc = dict(raw)
        definition = doc.get("definition")
        if isinstance(definition, dict):
            del doc["definition"]
            for key, value in definition.items():
                if key in doc:
                    self.issues.append(
                        Issue(
                            ("definition", key), f"'{key}' is given both here and at the top level"
                        )
                    )
                    continue
                doc[key] = value
                self.locs.move((key,), ("definition", key))
        if isinstance(doc.get("version"), int) and not isinstance(doc["version"], bool):
            doc["version"] = str(doc["version"])
        self._lift_guards(doc)
        if isinstance(doc.get("steps"), list):
            doc["steps"] = self.steps(doc["steps"], ("steps",))
        return doc

    def _lift_guards(self, doc: dict[str, Any]) -> None:
        bare = [name for name in _GUARD_NAMES if name in doc]
        if not bare:
            return
        guards = doc.get("guards")
        if guards is None:
            guards = {}
        if not isinstance(guards, dict):
            return  # the model rejects a non-object `guards` with its own message
        guards = dict(guards)
        for name in bare:
            if name in guards:
                self.issues.append(Issue((name,), f"'{name}' is given both here and in 'guards'"))
                continue
            guards[name] = doc.pop(name)
            self.locs.move_to(("guards", name), (name,))
        doc["guards"] = guards

    def steps(self, steps: list[Any], loc: Loc) -> list[Any]:
        return [self.step(step, (*loc, index)) for index, step in enumerate(steps)]

    def step(self, raw: Any, loc: Loc) -> Any:
        if not isinstance(raw, dict):
            return raw
        step = dict(raw)
        kind = step.get("type")
        if not isinstance(kind, str):
            return step  # the model rejects a missing or non-string type
        for step_type, alias, field in _STEP_ALIASES:
            if kind == step_type:
                self._rename(step, alias, field, loc)
        if kind in _BODY_STEP_TYPES:
            self._rename(step, "steps", "body", loc)
        for field in _CONDITION_FIELDS.get(kind if isinstance(kind, str) else "", ()):
            if field in step:
                step[field] = self.condition(step[field], (*loc, field))
        for field in ("then", "else", "body"):
            if isinstance(step.get(field), list):
                step[field] = self.steps(step[field], (*loc, field))
        if kind == "parallel" and isinstance(step.get("branches"), list):
            step["branches"] = [
                self.branch(branch, (*loc, "branches", index))
                for index, branch in enumerate(step["branches"])
            ]
        return step

    def branch(self, raw: Any, loc: Loc) -> Any:
        # The reference may spell a branch as {steps: [...]} (with a name); the
        # canonical form is the bare list.
        if isinstance(raw, dict) and isinstance(raw.get("steps"), list):
            self.locs.move(loc, (loc[-1], "steps"))
            raw = raw["steps"]
        if isinstance(raw, list):
            return self.steps(raw, loc)
        return raw

    def _rename(self, step: dict[str, Any], alias: str, field: str, loc: Loc) -> None:
        if alias not in step:
            return
        if field in step:
            self.issues.append(
                Issue((*loc, alias), f"give '{field}' or its alias '{alias}', not both")
            )
            del step[alias]
            return
        step[field] = step.pop(alias)
        self.locs.move((*loc, field), (alias,))

    def condition(self, raw: Any, loc: Loc) -> Any:
        if not isinstance(raw, dict):
            return raw
        cond = dict(raw)
        if "op" not in cond and "type" in cond:
            cond = self._seed_condition(cond, loc)
        if isinstance(cond.get("conditions"), list):
            cond["conditions"] = [
                self.condition(child, (*loc, "conditions", index))
                for index, child in enumerate(cond["conditions"])
            ]
        if "condition" in cond:
            cond["condition"] = self.condition(cond["condition"], (*loc, "condition"))
        return cond

    def _seed_condition(self, cond: dict[str, Any], loc: Loc) -> dict[str, Any]:
        kind = cond.pop("type")
        self.locs.move((*loc, "op"), ("type",))
        if not isinstance(kind, str) or kind not in SEED_CONDITION_TYPES:
            cond["op"] = kind  # `and`/`or`/`not` or the canonical ops spelled as a type
            return cond
        op, negated = SEED_CONDITION_TYPES[kind]
        inner: dict[str, Any] = {"op": op}
        inner_loc = (*loc, "condition") if negated else loc
        field = cond.pop("field", None)
        if not isinstance(field, str):
            self.issues.append(
                Issue((*loc, "field"), "must be a path such as 'start_up.status' or 'inputs.port'")
            )
        operand = f"{{{{{field}}}}}" if isinstance(field, str) and "{{" not in field else field
        if op in _UNARY:
            if "value" in cond:
                # Canonically `value` is the tested field, so the stray key gets a
                # location of its own that maps back to where it was written.
                cond.pop("value")
                stray = (*loc, "value (not allowed)")
                self.locs.move(stray, ("value",))
                self.issues.append(Issue(stray, f"'{kind}' takes no 'value'"))
            inner["value"] = operand
            self.locs.move((*inner_loc, "value"), ("field",))
        else:
            inner["left"] = operand
            inner["right"] = cond.pop("value", None)
            self.locs.move((*inner_loc, "left"), ("field",))
            self.locs.move((*inner_loc, "right"), ("value",))
        for key in list(cond):  # anything else is unknown: keep it for the model to reject
            inner[key] = cond.pop(key)
            self.locs.move((*inner_loc, key), (key,))
        if negated:
            self.locs.move((*loc, "condition"), ())
            return {"op": "not", "condition": inner}
        return inner


def normalize(raw: Any) -> tuple[Any, LocMap, list[Issue]]:
    """Canonicalise a workflow document.

    Returns the canonical document, the map from canonical to original
    locations, and the problems only the normaliser can see (an alias given
    together with its canonical name, a key both inside ``definition`` and at
    the top level). Anything else is left for the models to reject.
    """
    normalizer = _Normalizer()
    if not isinstance(raw, dict):
        return raw, normalizer.locs, normalizer.issues
    return normalizer.document(raw), normalizer.locs, normalizer.issues
