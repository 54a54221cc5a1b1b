"""A model fills and submits a form in real Chromium, its clicks scaled from a small frame."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cuaflow.agents.config import LoopSettings, ProviderSettings
from cuaflow.agents.loop import ModelAgent, default_scaler
from cuaflow.agents.providers.openai import OpenAIProvider
from cuaflow.agents.verifier import VerifiedAgent
from cuaflow.machines.programs import find_chromium
from tests.agents.fakes import context_for, openai_turn, serve
from tests.web import serve_pages

browser = pytest.importorskip("cuaflow.machines.browser")
if find_chromium() is None:
    pytest.skip("no Chromium on this machine", allow_module_level=True)

# The name field's centre is at (550, 320) on the 1280x800 page: (275, 160) on a half-size frame.
FORM = b"""<!doctype html><html><body style="margin:0">
<form action="/thanks" method="get">
<input name="name" style="position:absolute; left:400px; top:300px; width:300px; height:40px">
</form></body></html>"""
THANKS = b"<!doctype html><html><body><h1>Thanks!</h1></body></html>"


@pytest.fixture
def site() -> Iterator[tuple[str, list[str]]]:
    """A local web server with the form; yields its URL and the paths it was asked for."""
    with serve_pages(lambda path: THANKS if path.startswith("/thanks") else FORM) as served:
        yield served


async def test_the_model_fills_and_submits_a_form(site: tuple[str, list[str]]) -> None:
    """Navigate, click the field on a half-size screenshot, type, press Enter: the server gets it."""
    url, asked = site
    small = LoopSettings(screenshot_max_width=640, screenshot_max_height=400)
    machine = browser.BrowserMachine("browser")
    with serve(
        openai_turn(("navigate", {"url": f"{url}/form"})),
        openai_turn(("click", {"x": 275, "y": 160}), ("type", {"text": "Ada"})),
        openai_turn(("key", {"keys": ["Enter"]})),
        openai_turn(("done", {"summary": "submitted"})),
    ) as server:
        settings = ProviderSettings(api_key=None, base_url=f"{server.url}/v1", max_retries=0)
        agent = ModelAgent(
            OpenAIProvider("fake", settings), settings=small, scaler=default_scaler(small)
        )
        ctx = context_for(machine, "sign the guest book as Ada", verify=[
            {"type": "url", "pattern": "*/thanks?name=Ada"},
            {"type": "text", "text": "Thanks!"},
        ])  # fmt: skip
        try:
            outcome = await VerifiedAgent(agent).run(ctx)
        finally:
            await machine.close()
    assert outcome.passed, (outcome.error, outcome.verdict)
    assert "/thanks?name=Ada" in asked
    assert [a["type"] for a in ctx.actions] == ["navigate", "click", "type", "key", "done"]
    assert (ctx.actions[1]["x"], ctx.actions[1]["y"]) == (551, 321)
    # The model was shown frames of 640x400, never the full page.
    image = server.requests[1].body["messages"][-1]["content"][-1]["image_url"]["url"]
    assert image.startswith("data:image/png;base64,")
    assert "Current URL: " + f"{url}/form" in str(server.requests[1].body["messages"][-1])
