"""The HTTP API's tunables, from ``CUAFLOW_*`` environment variables with working defaults.

- ``CUAFLOW_MAX_BODY_BYTES``: largest request body accepted (default 1 MiB, the
  size limit of a workflow document); larger bodies answer 413.
- ``CUAFLOW_SSE_KEEPALIVE_SECONDS``: how often an idle event stream sends a
  ``: keepalive`` comment (default 15).
- ``CUAFLOW_SSE_POLL_SECONDS``: how often the event hub looks for events that
  other processes wrote (default 0.1); events written by this process's worker
  are delivered at once, without polling.
- ``CUAFLOW_KEY_CACHE_SECONDS``: how long a looked-up API key is remembered
  (default 5), which is also how long a revoked key may keep working.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cuaflow.errors import CuaflowError


@dataclass(frozen=True)
class ApiSettings:
    """Limits and intervals of the HTTP API."""

    max_body_bytes: int = 1_048_576
    keepalive_seconds: float = 15.0
    poll_seconds: float = 0.1
    key_cache_seconds: float = 5.0

    @classmethod
    def from_env(cls) -> ApiSettings:
        """Settings from the environment; defaults where a variable is unset."""
        defaults = cls()
        return cls(
            max_body_bytes=int(_number("CUAFLOW_MAX_BODY_BYTES", defaults.max_body_bytes)),
            keepalive_seconds=_number("CUAFLOW_SSE_KEEPALIVE_SECONDS", defaults.keepalive_seconds),
            poll_seconds=_number("CUAFLOW_SSE_POLL_SECONDS", defaults.poll_seconds),
            key_cache_seconds=_number("CUAFLOW_KEY_CACHE_SECONDS", defaults.key_cache_seconds),
        )


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0:
        raise CuaflowError(f"{name} must be a non-negative number, got {raw!r}")
    return value
