"""The browser machine drives the system Chromium against pages served by a local HTTP server."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from PIL import Image

from cuaflow.dsl.actions import Action, Bash, Click, Drag, Key, Navigate, Scroll, Type
from cuaflow.machines.base import ActionResult, Observation
from cuaflow.machines.browser import BrowserMachine
from cuaflow.machines.programs import find_chromium
from cuaflow.machines.screenshots import scale_for_model
from tests.machines.support import (
    Recorder,
    descendants,
    eventually,
    free_port,
    serve_pages,
    wait_until,
)

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="Chromium is not installed (run scripts/install-system-deps.sh)"
)

SECRETS = {"TOKEN": "s3cr3t-t0ken"}

FORM = """<!doctype html><html><head><title>Form</title><style>
body { margin: 0; font: 16px sans-serif; }
input { position: absolute; left: 100px; width: 300px; height: 30px; }
button { position: absolute; left: 100px; top: 220px; width: 120px; height: 40px; }
</style></head><body>
<form method="post" action="/submit">
  <input name="name" style="top: 100px">
  <input name="token" style="top: 160px">
  <button type="submit">Send</button>
</form>
<a href="/other" target="_blank" style="position: absolute; left: 500px; top: 100px">open tab</a>
</body></html>"""

# A red square ringed by blue ones: a click that misses by a few pixels hits blue.
TARGET = """<!doctype html><html><head><style>
body { margin: 0; background: white; }
div { position: absolute; width: 14px; height: 14px; }
</style></head><body>
<div id="red" style="left: 801px; top: 523px; background: rgb(255,0,0)"></div>
<div style="left: 785px; top: 523px; background: blue"></div>
<div style="left: 817px; top: 523px; background: blue"></div>
<div style="left: 801px; top: 507px; background: blue"></div>
<div style="left: 801px; top: 539px; background: blue"></div>
<p id="log" style="position: fixed; left: 10px; top: 10px">none</p>
<script>
document.addEventListener("click", e => {
  log.textContent = "clicked " + (e.target.id || e.target.style.background);
});
</script></body></html>"""

POINTER = """<!doctype html><html><head><style>body { margin: 0; height: 4000px; }</style></head>
<body><p id="log" style="position: fixed; left: 10px; top: 10px">start</p>
<script>
const say = text => { log.textContent = text; };
document.addEventListener("dblclick", e => say(`double ${e.clientX},${e.clientY}`));
document.addEventListener("mousedown", e => { window.down = [e.clientX, e.clientY]; });
document.addEventListener("mouseup", e => say(`drag ${window.down} to ${e.clientX},${e.clientY}`));
window.addEventListener("scroll", () => say(`scrolled ${window.scrollY}`));
</script></body></html>"""


@pytest.fixture
def site() -> Iterator[Recorder]:
    pages = {"/": FORM, "/target": TARGET, "/pointer": POINTER, "/other": "<h1>Other tab</h1>"}
    with serve_pages(pages) as recorder:
        yield recorder


@pytest.fixture
async def browser() -> AsyncIterator[BrowserMachine]:
    machine = BrowserMachine("browser-test", settle_seconds=0.05)
    yield machine
    await machine.close()


async def _do(machine: BrowserMachine, action: Action) -> ActionResult:
    result = await machine.perform(action, secrets=SECRETS)
    assert result.ok, result.error
    assert SECRETS["TOKEN"] not in f"{result.output} {result.error}"
    return result


async def _observe_until(
    machine: BrowserMachine, done: Callable[[Observation], bool]
) -> Observation:
    """Observe until ``done`` holds (a navigation may still be on its way), at most 10 s."""
    for _ in range(200):
        observation = await machine.observe()
        if done(observation):
            break
        await asyncio.sleep(0.05)
    return observation


async def test_fills_and_submits_a_form(browser: BrowserMachine, site: Recorder) -> None:
    """Clicks, typing, select-all and a secret placeholder reach the server as a person's would."""
    await _do(browser, Navigate(type="navigate", url=f"{site.url}/"))
    await _do(browser, Click(type="click", x=250, y=115))
    await _do(browser, Type(type="type", text="Ada Lovelace"))
    await _do(browser, Key(type="key", keys=["ctrl", "a"]))
    await _do(browser, Type(type="type", text="Grace Hopper"))
    await _do(browser, Click(type="click", x=250, y=175))
    await _do(browser, Type(type="type", text="{{secrets.TOKEN}}"))
    await _do(browser, Click(type="click", x=160, y=240))

    await eventually(lambda: bool(site.posts), what="the form to arrive")
    assert site.posts == [{"name": "Grace Hopper", "token": "s3cr3t-t0ken"}]
    observation = await _observe_until(browser, lambda seen: seen.url != f"{site.url}/")
    assert observation.url == f"{site.url}/submit"
    assert "name=Grace Hopper" in observation.text
    assert "token=***" in observation.text
    assert SECRETS["TOKEN"] not in observation.text
    assert observation.screenshot_png is not None
    assert Image.open(io.BytesIO(observation.screenshot_png)).size == (1280, 800)


async def test_keyboard_alone_moves_between_fields_and_submits(
    browser: BrowserMachine, site: Recorder
) -> None:
    """Tab moves to the next field and Return submits the form."""
    await _do(browser, Navigate(type="navigate", url=f"{site.url}/"))
    await _do(browser, Click(type="click", x=250, y=115))
    await _do(browser, Type(type="type", text="x"))
    await _do(browser, Key(type="key", keys=["Tab"]))
    await _do(browser, Type(type="type", text="y"))
    await _do(browser, Key(type="key", keys=["Return"]))
    await eventually(lambda: bool(site.posts), what="the form to arrive")
    assert site.posts == [{"name": "x", "token": "y"}]


async def test_click_on_a_scaled_frame_lands_on_the_element(
    browser: BrowserMachine, site: Recorder
) -> None:
    """A point found on the downscaled screenshot, mapped back, hits the 14 px target."""
    await _do(browser, Navigate(type="navigate", url=f"{site.url}/target"))
    observation = await browser.observe()
    assert observation.screenshot_png is not None
    frame, scale = scale_for_model(observation.screenshot_png, 1000, 700)
    assert (scale.frame_width, scale.frame_height) == (1000, 625)
    image = Image.open(io.BytesIO(frame)).convert("RGB")
    reds = [
        (x, y)
        for y in range(image.height)
        for x in range(image.width)
        if image.getpixel((x, y)) == (255, 0, 0)
    ]
    assert reds, "the red target is not in the scaled frame"
    fx = sorted(x for x, _ in reds)[len(reds) // 2]
    fy = sorted(y for _, y in reds)[len(reds) // 2]
    x, y = scale.to_screen(fx, fy)
    await _do(browser, Click(type="click", x=x, y=y))
    assert "clicked red" in (await browser.observe()).text


async def test_pointer_actions_and_scrolling(browser: BrowserMachine, site: Recorder) -> None:
    """Double click, drag and scroll arrive as the page's own events, at the given points."""
    await _do(browser, Navigate(type="navigate", url=f"{site.url}/pointer"))
    await _do(browser, Click(type="double_click", x=300, y=200))
    assert "double 300,200" in (await browser.observe()).text
    await _do(browser, Drag(type="drag", x=100, y=300, to_x=400, to_y=350))
    assert "drag 100,300 to 400,350" in (await browser.observe()).text
    await _do(browser, Scroll(type="scroll", x=640, y=400, dy=600))
    scrolled = await _observe_until(browser, lambda seen: "scrolled" in seen.text)
    assert "scrolled 600" in scrolled.text


async def test_a_new_tab_becomes_the_current_one(browser: BrowserMachine, site: Recorder) -> None:
    """A link opening a new tab leaves the machine looking at that tab, as a person would."""
    await _do(browser, Navigate(type="navigate", url=f"{site.url}/"))
    await _do(browser, Click(type="click", x=530, y=110))
    # The tab opens asynchronously, as it does for a person: look until it shows.
    observation = await _observe_until(browser, lambda seen: seen.url != f"{site.url}/")
    assert observation.url == f"{site.url}/other"
    assert "Other tab" in observation.text


async def test_failures_come_back_as_results(browser: BrowserMachine) -> None:
    """Unreachable pages, unknown keys and secrets, and foreign actions fail without raising."""
    closed = await browser.perform(
        Navigate(type="navigate", url=f"http://127.0.0.1:{free_port()}/"), secrets={}
    )
    assert not closed.ok
    assert "ERR_CONNECTION_REFUSED" in (closed.error or "")
    unknown_key = await browser.perform(Key(type="key", keys=["hyperdrive"]), secrets={})
    assert not unknown_key.ok
    assert "unknown key 'hyperdrive'" in (unknown_key.error or "")
    missing = await browser.perform(Type(type="type", text="{{secrets.NOPE}}"), secrets={})
    assert not missing.ok
    assert "unknown secret 'NOPE'" in (missing.error or "")
    bash = await browser.perform(Bash(type="bash", command="true"), secrets={})
    assert not bash.ok
    assert "cannot perform 'bash'" in (bash.error or "")


async def test_close_stops_the_browser_process(site: Recorder) -> None:
    """Each machine runs its own Chromium, and close() leaves none of its processes behind."""
    machine = BrowserMachine("browser-close")
    await _do(machine, Navigate(type="navigate", url=f"{site.url}/"))
    before = {pid for pid, name in descendants(os.getpid()).items() if "chrom" in name}
    assert before, "no Chromium process was started"
    await machine.close()
    wait_until(
        lambda: not any(pid in before for pid in descendants(os.getpid())),
        timeout=10,
        what="Chromium to exit",
    )
    await machine.close()  # a second close is harmless
