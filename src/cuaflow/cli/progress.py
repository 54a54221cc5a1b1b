"""The live progress view of ``cuaflow run``: one readable line per event, cost so far."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape

_STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "timed_out": "red",
    "awaiting_human": "magenta",
    "running": "cyan",
    "queued": "dim",
}


class ProgressView:
    """Prints a run's events as they arrive."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.spent_cents = 0

    def show(self, event: dict[str, Any]) -> None:
        """Print one event (``type`` and ``data`` as stored)."""
        kind, data = event["type"], event["data"]
        line = self._line(kind, data)
        if line:
            self.console.print(line, highlight=False)

    def _line(self, kind: str, data: dict[str, Any]) -> str | None:
        if kind == "status":
            status = data["status"]
            return f"[{_STATUS_STYLE.get(status, 'white')}]● run {status}[/]"
        if kind == "step":
            return self._step(data)
        if kind == "tool_call":
            action = data.get("action", {})
            mark = "[green]✓[/]" if data.get("ok") else "[red]✗[/]"
            detail = _action_text(action)
            exit_code = data.get("exit_code")
            code = f" [dim](exit {exit_code})[/]" if exit_code not in (None, 0) else ""
            error = f"\n      [red]{escape(str(data['error']))}[/]" if data.get("error") else ""
            return f"    {mark} [bold]{escape(action.get('type', '?'))}[/] {detail}{code}{error}"
        if kind == "billing":
            self.spent_cents = data.get("spent_cents", self.spent_cents)
            return None
        if kind == "awaiting_human":
            return (
                f"[magenta]⏸ {escape(data['step_id'])} needs a human:[/] {escape(data['message'])}"
            )
        if kind == "resumed":
            verdict = "approved" if data.get("approved") else "rejected"
            note = f" ({escape(str(data['note']))})" if data.get("note") else ""
            return f"[magenta]▶ {verdict}{note}[/]"
        if kind == "text":
            return f"  [dim]{escape(str(data.get('message', '')))}[/]"
        return None

    def _step(self, data: dict[str, Any]) -> str:
        step_id = escape(data["step_id"])
        kind = data.get("type", "")
        status = data.get("status")
        if status == "started":
            return f"[cyan]▸ {step_id}[/] [dim]{kind}[/] {escape(data.get('task', ''))}"
        cost = f" [dim]· {_money(self.spent_cents)} so far[/]" if kind == "task" else ""
        if status == "failed":
            message = escape((data.get("error") or {}).get("message", ""))
            return f"[red]✗ {step_id}[/] [dim]{kind}[/] {message}{cost}"
        summary = _result_text(kind, data.get("result") or {})
        return f"[green]✓ {step_id}[/] [dim]{kind}[/] {summary}{cost}"

    def summary(self, run: dict[str, Any]) -> None:
        """Print the run's final state, output or error, and cost."""
        status = run["status"]
        style = _STATUS_STYLE.get(status, "white")
        self.console.print(
            f"\n[bold {style}]Run {run['id']} {status}[/] · {run['steps_completed']} agent steps · "
            f"{_money(run['spent_cents'])}",
            highlight=False,
        )
        if run.get("error"):
            error = run["error"]
            step_id = error.get("step_id")
            named = step_id and f"'{step_id}'" in error["message"]
            where = f" at step '{step_id}'" if step_id and not named else ""
            self.console.print(f"[red]{error['code']}{where}: {escape(error['message'])}[/]")
        if run.get("output") is not None:
            self.console.print(f"output: {escape(json.dumps(run['output']))}", highlight=False)


def _money(cents: int) -> str:
    return f"${cents / 100:.2f}"


def _action_text(action: dict[str, Any]) -> str:
    for key in ("command", "url", "text", "path", "summary", "reason"):
        if action.get(key):
            lines = str(action[key]).strip().splitlines() or [""]
            first = lines[0]
            more = len(first) > 72 or len(lines) > 1
            return escape(first[:72]) + ("[dim] …[/]" if more else "")
    if "port" in action:
        return f"{action.get('host', '')}:{action['port']}"
    if "seconds" in action:
        return f"{action['seconds']} s"
    return ""


def _result_text(kind: str, result: dict[str, Any]) -> str:
    if kind == "task":
        return "passed" if result.get("passed") else "[yellow]did not pass[/]"
    if kind == "if":
        return f"took {result.get('branch')}"
    if kind in ("loop",):
        return f"{result.get('iterations')} iterations"
    if kind == "retry":
        return f"after {result.get('attempts')} attempt(s)"
    if kind == "human_approval":
        return "approved" if result.get("approved") else "rejected"
    return ""
