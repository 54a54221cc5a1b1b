"""Webhooks: runs announce their status changes to a URL, signed, from a durable outbox.

Receivers check a delivery with :func:`verify`; the rest of the package is the
sending side (signing, URL safety, the retry schedule and the delivery loop).
See docs/webhooks.md.
"""

from cuaflow.errors import WebhookVerificationError
from cuaflow.webhooks.verify import verify

__all__ = ["WebhookVerificationError", "verify"]
