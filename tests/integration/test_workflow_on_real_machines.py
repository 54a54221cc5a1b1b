"""A workflow whose task steps a model carries out on a real browser and a real desktop.

The model is a fake server speaking the OpenAI wire format; everything else is
real: the engine, Chromium, an Xvfb desktop with a Tk window, screenshots
scaled to half size for the model and clicks mapped back to the screen.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cuaflow.machines.registry import missing_programs
from cuaflow.store.artifacts import ArtifactStore
from tests.agents.fakes import openai_turn, serve
from tests.integration.engine_harness import Harness, wf
from tests.web import serve_pages

pytestmark = pytest.mark.skipif(
    bool(missing_programs("browser") or missing_programs("desktop")),
    reason="needs Chromium, Xvfb and xdotool (scripts/install-system-deps.sh)",
)

FORM = b"""<!doctype html><html><body style="margin:0">
<form action="/thanks" method="get">
<input name="name" style="position:absolute; left:400px; top:300px; width:300px; height:40px">
</form></body></html>"""
# A Tk window at (40, 60): an entry at (20, 20) in it, 400x36, saving its text on Return.
TK_APP = """
import sys, tkinter as tk
saved, ready = sys.argv[1:3]
root = tk.Tk()
root.geometry("600x200+40+60")
entry = tk.Entry(root, font=("TkFixedFont", 14))
entry.place(x=20, y=20, width=400, height=36)
entry.bind("<Return>", lambda event: open(saved, "w").write(entry.get()))
root.update()
root.after(200, lambda: open(ready, "w").write("up"))
root.mainloop()
"""


@pytest.fixture
def site() -> Iterator[tuple[str, list[str]]]:
    """A local web server with the form; yields its URL and the paths it was asked for."""
    with serve_pages(
        lambda path: b"<h1>Thanks!</h1>" if path.startswith("/thanks") else FORM
    ) as served:
        yield served


async def test_model_drives_a_browser_and_a_desktop_in_one_workflow(
    harness: Harness,
    site: tuple[str, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The form is submitted in Chromium, text is typed into a Tk window, and every frame is kept."""
    url, asked = site
    app = tmp_path / "app.py"
    app.write_text(TK_APP)
    saved, ready = tmp_path / "saved.txt", tmp_path / "ready"
    launch = f"{sys.executable} {app} {saved} {ready} > /dev/null 2>&1 &"
    workflow = wf(
        {
            "id": "sign",
            "type": "task",
            "task": "Sign the guest book as Ada",
            "machine_id": "local-browser",
        },
        {
            "id": "signed",
            "type": "assert",
            "condition": {"op": "truthy", "value": "{{sign.passed}}"},
        },
        {
            "id": "note",
            "type": "task",
            "task": "Type hello into the app",
            "machine_id": "local-desktop",
        },
        output={
            "browser": "{{sign.status}}",
            "desktop": "{{note.status}}",
            "steps": "{{note.steps}}",
        },
    )
    with serve(
        openai_turn(("navigate", {"url": f"{url}/form"})),
        openai_turn(("click", {"x": 275, "y": 160}), ("type", {"text": "Ada"})),
        openai_turn(("key", {"keys": ["Enter"]})),
        openai_turn(text="The guest book is signed."),
        openai_turn(("bash", {"command": launch})),
        openai_turn(("wait_for_file", {"path": str(ready), "timeout_seconds": 20})),
        openai_turn(("click", {"x": 130, "y": 49}), ("type", {"text": "hello"})),
        openai_turn(("key", {"keys": ["Return"]})),
        openai_turn(text="Typed hello."),
    ) as server:
        monkeypatch.setenv("CUAFLOW_MODEL", "openai:fake-cua")
        monkeypatch.setenv("CUAFLOW_OPENAI_BASE_URL", f"{server.url}/v1")
        monkeypatch.setenv("CUAFLOW_SCREENSHOT_MAX_WIDTH", "640")
        monkeypatch.setenv("CUAFLOW_SCREENSHOT_MAX_HEIGHT", "400")
        run = await harness.wait(harness.start(workflow), timeout=120)
    assert run["status"] == "succeeded", run["error"]
    assert run["output"] == {"browser": "succeeded", "desktop": "succeeded", "steps": 4}
    assert "/thanks?name=Ada" in asked
    assert saved.read_text() == "hello"
    assert run["spent_cents"] == 5 * 7  # seven model turns performed actions
    store = ArtifactStore(harness.data_dir)
    names = store.names(run["id"])
    assert any(name.startswith("sign-step-") for name in names)
    assert any(name.startswith("note-step-") for name in names)
    shots = [
        event["data"]["screenshot"]
        for event in harness.events(run["id"])
        if event["type"] == "tool_call" and "screenshot" in event["data"]
    ]
    assert len(shots) == 9  # one per performed action (two turns carried two)
    assert all(
        store.path(run["id"], name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in shots
    )
