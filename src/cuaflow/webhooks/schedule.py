"""When to try a delivery again, and when to give up.

After a failed attempt (a timeout, a network error, any answer but 2xx and
410) the next attempt waits a random time between 0 and
``min(retry_max, retry_base * 2 ** (n - 1))`` for the n-th failure in a row
("full jitter": retries of many deliveries spread out instead of arriving
together). With the defaults (1 minute base, 8 hours cap) the caps are 1, 2, 4,
... 256 minutes, then 8 hours; a delivery is given up (``failed``) when its next
attempt would fall more than 72 hours after its schedule started: about 27
attempts in all (between 21 and 35). An answer of 429 or 5xx with a
``Retry-After`` header (seconds or an HTTP date) is honoured instead of the
random delay, capped at ``retry_max``. A 410 stops the delivery at once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

log = logging.getLogger(__name__)

HTTP_GONE = 410
HTTP_TOO_MANY_REQUESTS = 429


@dataclass(frozen=True)
class DeliverySettings:
    """How deliveries are sent and retried (``CUAFLOW_WEBHOOK_*`` environment variables)."""

    timeout_seconds: float = 10.0
    retry_base_seconds: float = 60.0
    retry_max_seconds: float = 8 * 3600.0
    give_up_after_seconds: float = 72 * 3600.0
    poll_seconds: float = 0.5
    max_in_flight: int = 32

    @property
    def lease_seconds(self) -> float:
        """How long a claimed attempt is reserved: its timeout plus time to record the answer."""
        return self.timeout_seconds + 5.0

    @classmethod
    def from_env(cls) -> DeliverySettings:
        """Defaults, overridden by ``CUAFLOW_WEBHOOK_TIMEOUT_SECONDS``, ``..._RETRY_BASE_SECONDS``,
        ``..._RETRY_MAX_SECONDS``, ``..._GIVE_UP_AFTER_SECONDS`` and ``..._POLL_SECONDS``."""
        values: dict[str, Any] = {}
        for name in (
            "timeout_seconds",
            "retry_base_seconds",
            "retry_max_seconds",
            "give_up_after_seconds",
            "poll_seconds",
        ):
            variable = f"CUAFLOW_WEBHOOK_{name.upper()}"
            raw = os.environ.get(variable, "").strip()
            if not raw:
                continue
            try:
                values[name] = float(raw)
            except ValueError:
                log.warning("%s=%r is not a number of seconds; using the default", variable, raw)
        return dataclasses.replace(cls(), **values)


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt got back: an HTTP status, or an error before any answer."""

    status_code: int | None
    error: str | None = None
    retry_after: str | None = None  # the raw Retry-After header


@dataclass(frozen=True)
class NextStep:
    """What becomes of the delivery after an attempt."""

    status: str  # pending (try again at next_attempt_at), delivered, failed, stopped
    next_attempt_at: float | None = None


def next_step(
    result: AttemptResult,
    *,
    failures_in_a_row: int,
    schedule_started_at: float,
    now: float,
    settings: DeliverySettings,
    rng: random.Random | None = None,
) -> NextStep:
    """Decide what follows an attempt; ``failures_in_a_row`` counts this one if it failed."""
    code = result.status_code
    if code is not None and 200 <= code < 300:
        return NextStep("delivered")
    if code == HTTP_GONE:
        return NextStep("stopped")
    delay: float | None = None
    if code is not None and (code == HTTP_TOO_MANY_REQUESTS or code >= 500):
        delay = retry_after_seconds(result.retry_after, now)
    if delay is None:
        delay = backoff_delay(failures_in_a_row, settings, rng)
    delay = min(max(delay, 0.0), settings.retry_max_seconds)
    if now + delay > schedule_started_at + settings.give_up_after_seconds:
        return NextStep("failed")
    return NextStep("pending", now + delay)


def backoff_delay(
    failures_in_a_row: int, settings: DeliverySettings, rng: random.Random | None = None
) -> float:
    """A random delay in ``[0, min(max, base * 2 ** (failures - 1))]``."""
    exponent = min(max(failures_in_a_row - 1, 0), 62)
    ceiling = min(settings.retry_max_seconds, settings.retry_base_seconds * 2**exponent)
    return (rng or random).uniform(0.0, ceiling)


def retry_after_seconds(header: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or an HTTP date); None if absent
    or unreadable."""
    if header is None or not header.strip():
        return None
    value = header.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
