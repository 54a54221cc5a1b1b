"""Webhook secrets and the two signatures every delivery carries.

- ``Coasty-Signature: t=<unix>,v1=<hex>``: HMAC-SHA256 keyed with the whole
  secret string (``whsec_...``, as UTF-8) over ``"<t>." + raw body``.
- The Standard Webhooks headers ``webhook-id``, ``webhook-timestamp`` and
  ``webhook-signature: v1,<base64>``: HMAC-SHA256 keyed with the base64-decoded
  bytes after ``whsec_`` over ``"<id>.<timestamp>." + raw body``, computed by the
  ``standardwebhooks`` package so that it matches that spec exactly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
COASTY_HEADER = "Coasty-Signature"


def new_secret() -> str:
    """A fresh run secret: ``whsec_`` followed by the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def coasty_signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256, keyed with the whole secret string, of ``"<timestamp>." + body``."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def coasty_header(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Coasty-Signature`` header value: ``t=<timestamp>,v1=<hex>``."""
    return f"t={timestamp},v1={coasty_signature(secret, timestamp, body)}"


def standard_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks ``webhook-signature`` value ``v1,<base64>``.

    Raises ``UnicodeDecodeError`` for a body that is not UTF-8 (the package signs text)
    and ``binascii.Error`` for a secret whose part after ``whsec_`` is not base64.
    """
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    return Webhook(secret).sign(message_id, when, body.decode("utf-8"))


def signature_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every signature header of one delivery attempt, both schemes at one timestamp."""
    return {
        COASTY_HEADER: coasty_header(secret, timestamp, body),
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_signature(secret, message_id, timestamp, body),
    }
