"""Checking a received webhook, for receivers: ``verify(secret, body, headers)``.

Either signature scheme is accepted. When a ``Coasty-Signature`` header is
present it is the one checked; otherwise the Standard Webhooks headers are.
The timestamp must lie within ``tolerance_seconds`` of now (both ways), which
bounds how long a captured request can be replayed. Signatures are compared in
constant time, and several ``v1`` signatures in one header (as during a secret
rotation) are accepted if any matches.
"""

from __future__ import annotations

import binascii
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from cuaflow.errors import WebhookVerificationError
from cuaflow.webhooks.signing import coasty_signature, standard_signature

DEFAULT_TOLERANCE_SECONDS = 300


def verify(
    secret: str,
    body: bytes | str,
    headers: Mapping[str, str],
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> Any:
    """Check a webhook's signature and timestamp; return its JSON payload.

    ``body`` is the raw request body exactly as received (before any JSON
    parsing); ``headers`` any mapping of the request's headers (names are
    matched case-insensitively); ``now`` is Unix time (default: the clock).
    Raises :class:`~cuaflow.errors.WebhookVerificationError` saying what is
    wrong when the request is not authentic.
    """
    raw = body.encode("utf-8") if isinstance(body, str) else body
    lowered = {name.lower(): value for name, value in headers.items()}
    current = time.time() if now is None else now
    coasty = lowered.get("coasty-signature")
    if coasty is not None:
        timestamp, signatures = _parse_coasty(coasty)
        _check_timestamp(timestamp, current, tolerance_seconds)
        expected = coasty_signature(secret, timestamp, raw).encode("ascii")
        # Bytes, not str: compare_digest refuses non-ASCII text, which a forger may send.
        if not any(hmac.compare_digest(expected, given.encode("utf-8")) for given in signatures):
            raise WebhookVerificationError("Coasty-Signature does not match the body")
    else:
        _verify_standard(secret, raw, lowered, current, tolerance_seconds)
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise WebhookVerificationError(f"the signed body is not JSON: {exc}") from exc


def _parse_coasty(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = _parse_timestamp(value, "Coasty-Signature t")
        elif key == "v1" and value:
            signatures.append(value.strip().lower())
    if timestamp is None or not signatures:
        raise WebhookVerificationError("Coasty-Signature must look like t=<unix>,v1=<hex>")
    return timestamp, signatures


def _verify_standard(
    secret: str, raw: bytes, headers: dict[str, str], now: float, tolerance: float
) -> None:
    message_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signature_header = headers.get("webhook-signature")
    if not (message_id and stamp and signature_header):
        raise WebhookVerificationError(
            "no Coasty-Signature header and no complete set of webhook-id, "
            "webhook-timestamp and webhook-signature headers"
        )
    timestamp = _parse_timestamp(stamp, "webhook-timestamp")
    _check_timestamp(timestamp, now, tolerance)
    try:
        expected = standard_signature(secret, message_id, timestamp, raw)
    except UnicodeDecodeError as exc:
        raise WebhookVerificationError("the body is not UTF-8 text") from exc
    except (binascii.Error, ValueError) as exc:
        raise WebhookVerificationError("the secret is not whsec_ followed by base64") from exc
    expected_bytes = expected.partition(",")[2].encode("ascii")
    for candidate in signature_header.split():
        version, _, given = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(expected_bytes, given.encode("utf-8")):
            return
    raise WebhookVerificationError("webhook-signature does not match the body")


def _parse_timestamp(value: str, name: str) -> int:
    try:
        return int(value.strip())
    except ValueError as exc:
        raise WebhookVerificationError(f"{name} is not a Unix timestamp: {value!r}") from exc


def _check_timestamp(timestamp: int, now: float, tolerance: float) -> None:
    if timestamp < now - tolerance:
        raise WebhookVerificationError(
            f"the timestamp is {now - timestamp:.0f} s old, past the {tolerance:g} s tolerance"
        )
    if timestamp > now + tolerance:
        raise WebhookVerificationError(
            f"the timestamp is {timestamp - now:.0f} s in the future, "
            f"past the {tolerance:g} s tolerance"
        )
