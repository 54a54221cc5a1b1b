"""Subscribing a new run to webhooks: check its URL, make its secret."""

from __future__ import annotations

from cuaflow.errors import Issue, WorkflowInvalid
from cuaflow.webhooks.signing import new_secret
from cuaflow.webhooks.url_safety import check_url


def webhook_secret_for(webhook_url: str | None) -> str | None:
    """The secret that will sign a new run's deliveries; None when the run has no webhook URL.

    Raises ``WorkflowInvalid`` (location ``webhook_url``) naming the reason when
    the URL may not be called. Resolves the URL's host, so it blocks on DNS.
    """
    if webhook_url is None:
        return None
    refusal = check_url(webhook_url).refusal
    if refusal is not None:
        raise WorkflowInvalid([Issue(("webhook_url",), f"webhook_url {refusal}")])
    return new_secret()
