"""The delivery loop: send due outbox rows, signed, and record what happened.

Each worker runs one :class:`WebhookDeliverer` beside its run claimer. It
claims due deliveries with a lease (one transaction, ``FOR UPDATE SKIP
LOCKED`` / ``BEGIN IMMEDIATE``), sends each as a POST of its stored body with
both signature schemes, and records the attempt: delivered on 2xx, stopped on
410, otherwise retried on the schedule of :mod:`cuaflow.webhooks.schedule`.
A worker that dies mid-attempt leaves a lease that lapses; the attempt is then
made again (delivery is at least once, and every attempt carries the same
``webhook-id`` so receivers can drop repeats). Sending never touches the run.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import httpx
import sqlalchemy as sa

from cuaflow.errors import StoreError
from cuaflow.store import webhooks as store
from cuaflow.webhooks.schedule import AttemptResult, DeliverySettings, next_step
from cuaflow.webhooks.signing import signature_headers
from cuaflow.webhooks.url_safety import check_url

log = logging.getLogger(__name__)

USER_AGENT = "cuaflow-webhooks/1"


class WebhookDeliverer:
    """Sends the outbox's due deliveries until cancelled."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        owner: str,
        settings: DeliverySettings | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.engine = engine
        self.owner = owner
        self.settings = settings or DeliverySettings.from_env()
        self._rng = rng or random.Random()
        self._in_flight: set[asyncio.Task[None]] = set()

    async def run_forever(self) -> None:
        """Claim and send due deliveries, polling every ``poll_seconds``; stop when cancelled."""
        settings = self.settings
        # trust_env=False: a proxy from the environment would connect on our
        # behalf to whatever the host resolves to then, defeating the address check.
        async with httpx.AsyncClient(
            timeout=settings.timeout_seconds, follow_redirects=False, trust_env=False
        ) as client:
            try:
                while True:
                    try:
                        await self.send_due(client)
                    except StoreError:
                        log.exception("claiming webhook deliveries failed; trying again")
                    await asyncio.sleep(settings.poll_seconds)
            finally:
                for task in self._in_flight:
                    task.cancel()
                await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def send_due(self, client: httpx.AsyncClient) -> int:
        """Claim as many due deliveries as there are free slots and start sending them."""
        free = self.settings.max_in_flight - len(self._in_flight)
        if free <= 0:
            return 0
        claimed = await asyncio.to_thread(
            store.claim_due, self.engine, self.owner, free, self.settings.lease_seconds
        )
        for delivery in claimed:
            task = asyncio.create_task(self.attempt(client, delivery), name="cuaflow-webhook")
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        return len(claimed)

    async def attempt(self, client: httpx.AsyncClient, delivery: dict[str, Any]) -> None:
        """Make one attempt at a claimed delivery and record it."""
        result = await self._send(client, delivery)
        now = time.time()
        failed = result.status_code is None or not 200 <= result.status_code < 300
        step = next_step(
            result,
            failures_in_a_row=delivery["retry_attempts"] + 1 if failed else 0,
            schedule_started_at=delivery["retry_started_at"],
            now=now,
            settings=self.settings,
            rng=self._rng,
        )
        try:
            recorded = await asyncio.to_thread(
                store.record_attempt,
                self.engine,
                delivery["id"],
                self.owner,
                status=step.status,
                status_code=result.status_code,
                error=result.error,
                next_attempt_at=step.next_attempt_at,
            )
        except StoreError:
            log.exception("could not record webhook attempt %s; it will be made again", delivery)
            return
        if not recorded:
            log.warning("lost the lease of webhook delivery %s while sending it", delivery["id"])

    async def _send(self, client: httpx.AsyncClient, delivery: dict[str, Any]) -> AttemptResult:
        url = str(delivery["url"])
        secret = delivery.get("webhook_secret")
        if not secret:
            return AttemptResult(None, "the run has no webhook secret to sign with")
        checked = await asyncio.to_thread(check_url, url)
        if checked.refusal is not None:
            return AttemptResult(None, f"refused to call the URL: it {checked.refusal}")
        body = str(delivery["body"]).encode("utf-8")
        try:
            signatures = signature_headers(secret, delivery["id"], int(time.time()), body)
        except ValueError as exc:  # binascii.Error: the stored secret is not whsec_ + base64
            return AttemptResult(None, f"cannot sign with the run's secret: {exc}")
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **signatures}
        target = httpx.URL(url)
        extensions: dict[str, Any] = {}
        if checked.address is not None:
            target, extensions = pin_to_address(target, checked.address, headers)
        timeout = self.settings.timeout_seconds
        try:
            async with (
                asyncio.timeout(timeout),
                client.stream(
                    "POST", target, content=body, headers=headers, extensions=extensions
                ) as response,
            ):
                # The body is never read: only the status and Retry-After matter.
                retry_after = response.headers.get("retry-after")
                return AttemptResult(response.status_code, None, retry_after)
        except (TimeoutError, httpx.TimeoutException):
            return AttemptResult(None, f"no answer within {timeout:g} s")
        except httpx.HTTPError as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return AttemptResult(None, reason)


def pin_to_address(
    url: httpx.URL, address: str, headers: dict[str, str]
) -> tuple[httpx.URL, dict[str, Any]]:
    """Aim a request at ``url`` to connect to ``address``; return the URL and request extensions.

    The connection goes to the address that was checked, not to a fresh DNS
    answer, while the Host header (added to ``headers``) and TLS (SNI and the
    certificate check) keep the URL's host name.
    """
    headers["Host"] = url.netloc.decode("ascii")
    return url.copy_with(host=address), {"sni_hostname": url.host}
