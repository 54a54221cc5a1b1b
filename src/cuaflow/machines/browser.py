"""The ``browser`` machine: Playwright driving Chromium, launched here or reached over CDP.

Without ``cdp_url`` the machine launches its own Chromium (the system's
``chromium`` by default: Playwright's downloaded browsers are not used) with a
fresh temporary profile, one process per machine, torn down by :meth:`close`.
With ``cdp_url`` it attaches to a Chromium that is already running (started
with ``--remote-debugging-port``) through ``connect_over_cdp``: it acts in that
browser's first tab (opening one if there is none) and :meth:`close` only
disconnects, leaving the remote browser and its tabs as they were.

Pointer actions use page coordinates in CSS pixels, which equal screenshot
pixels because the device scale factor is 1. A tab opened by the page (a
``target=_blank`` link, ``window.open``) becomes the current tab, as it would
for a person. After an action that may navigate (a click, a key press) the
machine waits briefly and then for the page to finish loading, so the next
observation shows the page the action led to.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Mapping, Sequence

from playwright.async_api import (
    Browser,
    BrowserContext,
    CDPSession,
    Page,
    Playwright,
    async_playwright,
)
from playwright.async_api import Error as PlaywrightError

from cuaflow.dsl.actions import Action, Click, Drag, Key, Move, Navigate, Scroll, Type, Wait
from cuaflow.errors import MachineError
from cuaflow.machines.base import (
    ActionResult,
    Observation,
    as_number,
    scrub_result,
    scrub_secrets,
    substitute_secrets,
    unsupported_action,
)
from cuaflow.machines.keys import playwright_combo
from cuaflow.machines.lease import MachineLease
from cuaflow.machines.programs import CHROMIUM_NAMES, find_chromium
from cuaflow.machines.screenshots import png_size

DEFAULT_VIEWPORT = (1280, 800)
# No sandbox: the worker often runs as root in a container, where Chromium's
# sandbox cannot start. The rest keep a headless browser quiet and offline.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
ERROR_LIMIT = 2_000
LOCAL_HOSTS = ("localhost", "127.", "[::1]", "0.0.0.0")


class BrowserMachine:
    """A Chromium tab driven by Playwright.

    ``viewport`` is the page size in pixels (``None`` keeps a CDP browser's
    own window size); ``text_limit`` bounds the page text an observation
    carries; ``action_timeout_seconds`` bounds each Playwright call;
    ``settle_seconds`` is the pause after an action that may start a navigation.
    """

    kind = "browser"
    capabilities = frozenset(
        {"click", "double_click", "move", "drag", "scroll", "type", "key"}
        | {"screenshot", "wait", "navigate"}
    )

    def __init__(
        self,
        id: str,
        *,
        executable_path: str | None = None,
        cdp_url: str | None = None,
        viewport: tuple[int, int] | None = DEFAULT_VIEWPORT,
        headless: bool = True,
        extra_args: Sequence[str] = (),
        text_limit: int = 20_000,
        action_timeout_seconds: float = 30.0,
        settle_seconds: float = 0.1,
    ) -> None:
        self.id = id
        self.cdp_url = cdp_url
        self._executable_path = executable_path
        self._viewport = viewport
        self._headless = headless
        self._extra_args = tuple(extra_args)
        self._text_limit = text_limit
        self._timeout_ms = action_timeout_seconds * 1000
        self._settle_seconds = settle_seconds
        self._start_lock = asyncio.Lock()
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._context: BrowserContext | None = None
        self._page: Page | None = None
        self._own_page = False
        self._capture_session: tuple[Page, CDPSession] | None = None
        self._secrets: dict[str, str] = {}
        self.lease = MachineLease()

    async def start(self) -> None:
        """Launch (or connect to) the browser; actions and observations start it when needed."""
        async with self._start_lock:
            if self._context is not None:
                return
            playwright = await async_playwright().start()
            try:
                if self.cdp_url is not None:
                    await self._connect(playwright, self.cdp_url)
                else:
                    await self._launch(playwright)
            except PlaywrightError as error:
                await self._shut(playwright)
                where = self.cdp_url or self._executable_path or "chromium"
                raise MachineError(
                    f"cannot start the browser ({where}): {_brief(error)}"
                ) from error
            except BaseException:
                await self._shut(playwright)
                raise
            self._playwright = playwright

    async def _launch(self, playwright: Playwright) -> None:
        executable = self._executable_path or find_chromium()
        if executable is None:
            raise MachineError(f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)})")
        self._browser = await playwright.chromium.launch(
            executable_path=executable,
            headless=self._headless,
            args=[*CHROMIUM_ARGS, *self._extra_args],
            timeout=self._timeout_ms,
        )
        viewport = self._viewport or DEFAULT_VIEWPORT
        self._context = await self._browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=1
        )
        self._adopt(self._context, await self._context.new_page(), own=True)

    async def _connect(self, playwright: Playwright, cdp_url: str) -> None:
        self._browser = await playwright.chromium.connect_over_cdp(
            cdp_url, timeout=self._timeout_ms
        )
        contexts = self._browser.contexts
        context = contexts[0] if contexts else await self._browser.new_context()
        pages = context.pages
        own = not pages
        page = pages[0] if pages else await context.new_page()
        if self._viewport is not None:
            await page.set_viewport_size({"width": self._viewport[0], "height": self._viewport[1]})
        self._context = context
        self._adopt(context, page, own=own)

    def _adopt(self, context: BrowserContext, page: Page, *, own: bool) -> None:
        context.set_default_timeout(self._timeout_ms)
        context.on("page", self._follow_new_tab)
        self._page, self._own_page = page, own

    def _follow_new_tab(self, page: Page) -> None:
        self._page = page

    async def _current_page(self) -> Page:
        if self._browser is not None and not self._browser.is_connected():
            # The browser crashed or the remote one went away: start afresh.
            await self.close()
        await self.start()
        if self._page is not None and not self._page.is_closed():
            return self._page
        assert self._context is not None  # start() sets it or raises
        open_pages = [page for page in self._context.pages if not page.is_closed()]
        self._page = open_pages[-1] if open_pages else await self._context.new_page()
        return self._page

    async def perform(self, action: Action, *, secrets: Mapping[str, str]) -> ActionResult:
        """Perform ``action``; failures (even a bad field) come back as ``ok=False`` results."""
        if action.type not in self.capabilities:
            return unsupported_action(self, action.type)
        self._secrets.update(secrets)
        try:
            page = await self._current_page()
            result = await self._dispatch(page, action, secrets)
        except MachineError as error:
            result = ActionResult(ok=False, error=str(error))
        except PlaywrightError as error:
            result = ActionResult(ok=False, error=_brief(error))
        return scrub_result(result, secrets)

    async def _dispatch(
        self, page: Page, action: Action, secrets: Mapping[str, str]
    ) -> ActionResult:
        if isinstance(action, Navigate):
            return await self._navigate(page, substitute_secrets(action.url, secrets))
        if isinstance(action, Click):
            x, y = as_number(action.x, "x"), as_number(action.y, "y")
            if action.type == "double_click":
                await page.mouse.dblclick(x, y, button=action.button)
            else:
                await page.mouse.click(x, y, button=action.button)
            await self._settle(page)
            return ActionResult(ok=True, output=f"{action.type} at ({x:g}, {y:g})")
        if isinstance(action, Move):
            x, y = as_number(action.x, "x"), as_number(action.y, "y")
            await page.mouse.move(x, y)
            return ActionResult(ok=True, output=f"pointer at ({x:g}, {y:g})")
        if isinstance(action, Drag):
            return await self._drag(page, action)
        if isinstance(action, Scroll):
            return await self._scroll(page, action)
        if isinstance(action, Type):
            text = substitute_secrets(action.text, secrets)
            await page.keyboard.type(text)
            await self._settle(page)
            return ActionResult(ok=True, output=f"typed {len(action.text)} characters")
        if isinstance(action, Key):
            combo = playwright_combo(action.keys)
            await page.keyboard.press(combo)
            await self._settle(page)
            return ActionResult(ok=True, output=f"pressed {combo}")
        if isinstance(action, Wait):
            seconds = as_number(action.seconds, "seconds")
            await asyncio.sleep(seconds)
            return ActionResult(ok=True, output=f"waited {seconds:g} s")
        if action.type == "screenshot":
            width, height = png_size(await self._capture(page))
            return ActionResult(
                ok=True,
                output=f"screenshot {width}x{height}",
                data={"width": width, "height": height},
            )
        return unsupported_action(self, action.type)  # pragma: no cover - capabilities cover it

    async def _navigate(self, page: Page, url: str) -> ActionResult:
        target = with_scheme(url)
        response = await page.goto(target, wait_until="load")
        status = None if response is None else response.status
        shown = f" (HTTP {status})" if status is not None else ""
        return ActionResult(
            ok=True, output=f"loaded {page.url}{shown}", data={"status": status, "url": page.url}
        )

    async def _drag(self, page: Page, action: Drag) -> ActionResult:
        x, y = as_number(action.x, "x"), as_number(action.y, "y")
        to_x, to_y = as_number(action.to_x, "to_x"), as_number(action.to_y, "to_y")
        await page.mouse.move(x, y)
        await page.mouse.down()
        # Intermediate moves: drag-and-drop code often ignores a single jump.
        await page.mouse.move(to_x, to_y, steps=10)
        await page.mouse.up()
        await self._settle(page)
        return ActionResult(ok=True, output=f"dragged ({x:g}, {y:g}) to ({to_x:g}, {to_y:g})")

    async def _scroll(self, page: Page, action: Scroll) -> ActionResult:
        if action.x is not None and action.y is not None:
            await page.mouse.move(as_number(action.x, "x"), as_number(action.y, "y"))
        dx, dy = int(as_number(action.dx, "dx")), int(as_number(action.dy, "dy"))
        await page.mouse.wheel(dx, dy)
        # The wheel event returns before the page has scrolled.
        await asyncio.sleep(self._settle_seconds)
        return ActionResult(ok=True, output=f"scrolled by ({dx}, {dy})")

    async def _settle(self, page: Page) -> None:
        """Give a navigation the action started time to begin, then wait for it to load."""
        await asyncio.sleep(self._settle_seconds)
        with contextlib.suppress(PlaywrightError):
            await page.wait_for_load_state("load", timeout=self._timeout_ms)

    async def observe(self) -> Observation:
        """A screenshot of the tab, its URL and its visible text (bounded), secrets masked."""
        page = await self._current_page()
        # A page still loading would be photographed half drawn.
        with contextlib.suppress(PlaywrightError):
            await page.wait_for_load_state("load", timeout=self._timeout_ms)
        try:
            png = await self._capture(page)
            text = await self._visible_text(page)
        except PlaywrightError as error:
            raise MachineError(f"cannot observe the browser: {_brief(error)}") from error
        return Observation(
            text=scrub_secrets(text, self._secrets),
            screenshot_png=png,
            url=scrub_secrets(page.url, self._secrets),
        )

    async def _capture(self, page: Page) -> bytes:
        """A PNG of the viewport.

        Asked of Chromium directly with ``optimizeForSpeed``, its fast PNG
        encoder: 4-5 times quicker than Playwright's screenshot on busy pages,
        for files about half again as large.
        """
        if self._capture_session is None or self._capture_session[0] is not page:
            assert self._context is not None  # a page exists only once started
            self._capture_session = (page, await self._context.new_cdp_session(page))
        session = self._capture_session[1]
        reply = await session.send(
            "Page.captureScreenshot", {"format": "png", "optimizeForSpeed": True}
        )
        return base64.b64decode(reply["data"])

    async def _visible_text(self, page: Page) -> str:
        script = "() => document.body ? document.body.innerText : ''"
        try:
            text = str(await page.evaluate(script))
        except PlaywrightError:
            # The page navigated while we read it; read the new one once it has loaded.
            await page.wait_for_load_state("load")
            text = str(await page.evaluate(script))
        if len(text) <= self._text_limit:
            return text
        cut = len(text) - self._text_limit
        return f"{text[: self._text_limit]}\n[... {cut} characters cut ...]"

    async def close(self) -> None:
        """Close the browser (or, over CDP, only this machine's connection and its own tab)."""
        async with self._start_lock:
            playwright, self._playwright = self._playwright, None
            if playwright is None:
                return
            with contextlib.suppress(PlaywrightError):
                if self.cdp_url is not None and self._own_page and self._page is not None:
                    await self._page.close()
                if self.cdp_url is None and self._context is not None:
                    await self._context.close()
            await self._shut(playwright)

    async def _shut(self, playwright: Playwright) -> None:
        with contextlib.suppress(PlaywrightError):
            if self._browser is not None:
                await self._browser.close()
        with contextlib.suppress(PlaywrightError):
            await playwright.stop()
        self._browser = self._context = self._page = None
        self._capture_session = None


def with_scheme(url: str) -> str:
    """``url`` with a scheme: ``http://`` for local hosts, ``https://`` for others."""
    if "://" in url or url.startswith(("about:", "data:", "file:", "javascript:")):
        return url
    scheme = "http" if url.startswith(LOCAL_HOSTS) else "https"
    return f"{scheme}://{url}"


def _brief(error: Exception) -> str:
    """A Playwright error without its call log, bounded."""
    message = str(error).split("\nCall log:", 1)[0].strip()
    return message[:ERROR_LIMIT]
