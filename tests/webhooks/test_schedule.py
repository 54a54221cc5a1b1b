"""The retry schedule: full-jitter exponential backoff over three days, Retry-After, 410."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from cuaflow.webhooks.schedule import (
    AttemptResult,
    DeliverySettings,
    backoff_delay,
    next_step,
    retry_after_seconds,
)

DEFAULTS = DeliverySettings()
NOW = 1_700_000_000.0


def _after(
    result: AttemptResult, failures: int = 1, started: float = NOW
) -> tuple[str, float | None]:
    step = next_step(
        result,
        failures_in_a_row=failures,
        schedule_started_at=started,
        now=NOW,
        settings=DEFAULTS,
        rng=random.Random(7),
    )
    return step.status, step.next_attempt_at


@pytest.mark.parametrize("code", [200, 201, 204, 299])
def test_a_2xx_answer_delivers(code: int) -> None:
    """Any 2xx status marks the delivery delivered, with no next attempt."""
    assert _after(AttemptResult(code)) == ("delivered", None)


def test_410_stops_at_once() -> None:
    """410 Gone stops the delivery, even with a Retry-After header."""
    assert _after(AttemptResult(410, retry_after="5")) == ("stopped", None)


@pytest.mark.parametrize("code", [429, 500, 503])
def test_429_and_5xx_honour_retry_after(code: int) -> None:
    """A Retry-After on 429 or 5xx is the delay, exactly, instead of the random backoff."""
    assert _after(AttemptResult(code, retry_after="120")) == ("pending", NOW + 120)


def test_retry_after_on_other_answers_is_ignored() -> None:
    """Retry-After on a 400 does not set the delay; the backoff (at most 1 minute here) does."""
    status, at = _after(AttemptResult(400, retry_after="3600"))
    assert status == "pending"
    assert at is not None
    assert NOW <= at <= NOW + 60


def test_retry_after_is_capped_at_the_longest_delay() -> None:
    """A receiver asking for a week is retried after the 8-hour cap."""
    assert _after(AttemptResult(503, retry_after=str(7 * 86400))) == ("pending", NOW + 8 * 3600)


def test_retry_after_accepts_http_dates() -> None:
    """An HTTP-date Retry-After yields the seconds until then, never less than zero."""
    later = format_datetime(datetime.fromtimestamp(NOW + 90, tz=UTC), usegmt=True)
    assert retry_after_seconds(later, NOW) == pytest.approx(90)
    earlier = format_datetime(datetime.fromtimestamp(NOW - 90, tz=UTC), usegmt=True)
    assert retry_after_seconds(earlier, NOW) == 0
    assert retry_after_seconds("soon", NOW) is None
    assert retry_after_seconds(None, NOW) is None


def test_backoff_ceilings_double_up_to_the_cap() -> None:
    """The n-th failure waits at most min(8 h, 60 s * 2^(n-1)), and jitter uses the whole range."""
    rng = random.Random(1)
    for failures, ceiling in [(1, 60), (2, 120), (5, 960), (9, 15360), (10, 28800), (40, 28800)]:
        delays = [backoff_delay(failures, DEFAULTS, rng) for _ in range(400)]
        assert min(delays) >= 0
        assert max(delays) <= ceiling
        assert max(delays) > 0.9 * ceiling
        assert min(delays) < 0.1 * ceiling


def test_the_default_schedule_gives_up_after_about_three_days() -> None:
    """Failing every time, a delivery is retried for up to 72 h, about 25 times, then fails."""
    counts = []
    for seed in range(50):
        rng = random.Random(seed)
        now, failures = NOW, 0
        while True:
            failures += 1
            step = next_step(
                AttemptResult(None, "timed out"),
                failures_in_a_row=failures,
                schedule_started_at=NOW,
                now=now,
                settings=DEFAULTS,
                rng=rng,
            )
            if step.status == "failed":
                break
            assert step.status == "pending"
            assert step.next_attempt_at is not None
            assert step.next_attempt_at <= NOW + 72 * 3600
            now = step.next_attempt_at
        assert now > NOW + 60 * 3600  # the last retry came late in the third day
        counts.append(failures)
    assert 18 <= sum(counts) / len(counts) <= 32


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUAFLOW_WEBHOOK_* variables override the defaults; a bad value keeps the default."""
    monkeypatch.setenv("CUAFLOW_WEBHOOK_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("CUAFLOW_WEBHOOK_RETRY_BASE_SECONDS", "0.1")
    monkeypatch.setenv("CUAFLOW_WEBHOOK_POLL_SECONDS", "often")
    settings = DeliverySettings.from_env()
    assert settings.timeout_seconds == 2.5
    assert settings.retry_base_seconds == 0.1
    assert settings.poll_seconds == DEFAULTS.poll_seconds
    assert settings.lease_seconds > settings.timeout_seconds
