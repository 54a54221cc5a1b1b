"""A browser machine attached over CDP to a Chromium this test starts with a debugging port."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cuaflow.dsl.actions import Click, Navigate, Type
from cuaflow.machines.browser import CHROMIUM_ARGS, BrowserMachine
from cuaflow.machines.programs import find_chromium
from cuaflow.machines.registry import MachineSpec, build_machine
from tests.machines.support import eventually, free_port, serve_pages, wait_until

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="Chromium is not installed (run scripts/install-system-deps.sh)"
)

FORM = """<!doctype html><html><body style="margin: 0">
<form method="post" action="/submit">
  <input name="q" style="position: absolute; left: 50px; top: 50px; width: 200px; height: 30px">
  <button style="position: absolute; left: 50px; top: 100px; width: 100px; height: 30px">Go</button>
</form></body></html>"""


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture
def remote_chromium(tmp_path: Path) -> Iterator[str]:
    """A headless Chromium listening for CDP on a free loopback port; yields its http URL."""
    chromium = find_chromium()
    assert chromium is not None
    port = free_port()
    process = subprocess.Popen(
        [
            chromium,
            "--headless",
            f"--remote-debugging-port={port}",
            "--remote-debugging-address=127.0.0.1",
            f"--user-data-dir={tmp_path / 'profile'}",
            *CHROMIUM_ARGS,
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{url}/json/version"), timeout=20, what="Chromium's CDP port")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


async def test_drives_a_remote_chromium_and_leaves_it_running(remote_chromium: str) -> None:
    """Actions over CDP submit a form in the remote browser; close() only disconnects."""
    with serve_pages({"/": FORM}) as site:
        machine = build_machine(
            MachineSpec("remote", "cdp", {"url": remote_chromium, "width": 800, "height": 600}),
            workdir=Path("/nonexistent"),
        )
        assert isinstance(machine, BrowserMachine)
        try:
            for action in (
                Navigate(type="navigate", url=f"{site.url}/"),
                Click(type="click", x=150, y=65),
                Type(type="type", text="over cdp"),
                Click(type="click", x=100, y=115),
            ):
                result = await machine.perform(action, secrets={})
                assert result.ok, result.error
            await eventually(lambda: bool(site.posts), what="the form to arrive")
            assert site.posts == [{"q": "over cdp"}]
            observation = await machine.observe()
            for _ in range(200):
                if observation.url == f"{site.url}/submit":
                    break
                await asyncio.sleep(0.05)
                observation = await machine.observe()
            assert observation.url == f"{site.url}/submit"
            assert "q=over cdp" in observation.text
        finally:
            await machine.close()
    # The remote browser is still up and still shows the tab the machine used.
    with urllib.request.urlopen(f"{remote_chromium}/json/list", timeout=5) as response:
        assert "/submit" in response.read().decode()


async def test_unreachable_cdp_url_is_a_failed_action() -> None:
    """A CDP URL nobody listens on gives a failed result naming the URL, not an exception."""
    url = f"http://127.0.0.1:{free_port()}"
    machine = BrowserMachine("nowhere", cdp_url=url, action_timeout_seconds=3)
    try:
        result = await machine.perform(Navigate(type="navigate", url="about:blank"), secrets={})
    finally:
        await machine.close()
    assert not result.ok
    assert url in (result.error or "")
