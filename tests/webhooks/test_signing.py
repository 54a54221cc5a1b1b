"""Webhook signatures against fixed vectors, and verify() accepting and refusing requests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re

import pytest

from cuaflow.errors import CuaflowError, WebhookVerificationError
from cuaflow.webhooks import verify
from cuaflow.webhooks.signing import (
    coasty_header,
    coasty_signature,
    new_secret,
    signature_headers,
    standard_signature,
)

# The example published with the Standard Webhooks specification.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
# The same message under the Coasty scheme (checked with `openssl dgst -sha256 -hmac`).
SPEC_COASTY_HEX = "2e37df5d4a028c51a7f3133d64ae1e300d2c2c900f1b1d49d4369ad2530f8964"

# A cuaflow-shaped secret (the base64 of bytes 0..31) and body.
SECRET = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
BODY = b'{"event":"run.succeeded","run_id":"wfr_1"}'
TIMESTAMP = 1700000000
COASTY_HEX = "730c138b3cee72d214375cdc3da303f316ec38bc28c9a1a134310525d525956b"
STANDARD_B64 = "v1,4FkyyO5hFE0oZZYGFPW60Ggof1/V56iqefS6cOv5WXY="


def _independent_coasty(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def _independent_standard(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def test_standard_signature_reproduces_the_specs_published_example() -> None:
    """The webhook-signature of the Standard Webhooks example is the one the spec publishes."""
    assert standard_signature(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    assert _independent_standard(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "expected"),
    [
        (SPEC_SECRET, SPEC_TIMESTAMP, SPEC_BODY, SPEC_COASTY_HEX),
        (SECRET, TIMESTAMP, BODY, COASTY_HEX),
    ],
)
def test_coasty_signature_matches_fixed_vectors(
    secret: str, timestamp: int, body: bytes, expected: str
) -> None:
    """Coasty-Signature v1 is the HMAC-SHA256 hex, keyed with the whole secret, of "<t>." + body."""
    assert coasty_signature(secret, timestamp, body) == expected
    assert _independent_coasty(secret, timestamp, body) == expected
    assert coasty_header(secret, timestamp, body) == f"t={timestamp},v1={expected}"


def test_signature_headers_carry_both_schemes_at_one_timestamp() -> None:
    """A delivery's headers match the fixed vectors of both schemes for its id and timestamp."""
    headers = signature_headers(SECRET, "whd_1", TIMESTAMP, BODY)
    assert headers == {
        "Coasty-Signature": f"t={TIMESTAMP},v1={COASTY_HEX}",
        "webhook-id": "whd_1",
        "webhook-timestamp": str(TIMESTAMP),
        "webhook-signature": STANDARD_B64,
    }
    assert _independent_standard(SECRET, "whd_1", TIMESTAMP, BODY) == STANDARD_B64


def test_new_secrets_are_whsec_and_base64_of_32_random_bytes() -> None:
    """Each secret is whsec_ plus standard base64 of 32 bytes, and no two are alike."""
    made = {new_secret() for _ in range(50)}
    assert len(made) == 50
    for secret in made:
        assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret)
        assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32


def test_verify_accepts_the_coasty_scheme_and_returns_the_payload() -> None:
    """A body with a matching Coasty-Signature inside the window verifies and is parsed."""
    headers = {"coasty-signature": f"t={TIMESTAMP},v1={COASTY_HEX}"}
    payload = verify(SECRET, BODY, headers, now=TIMESTAMP + 299)
    assert payload == json.loads(BODY)


def test_verify_accepts_the_standard_scheme_alone() -> None:
    """Without Coasty-Signature, the Standard Webhooks headers (any case) are checked."""
    headers = {
        "Webhook-Id": SPEC_ID,
        "Webhook-Timestamp": str(SPEC_TIMESTAMP),
        "Webhook-Signature": "v1,bm90IGl0 " + SPEC_SIGNATURE,
    }
    assert verify(SPEC_SECRET, SPEC_BODY.decode(), headers, now=SPEC_TIMESTAMP) == {
        "test": 2432232314
    }


def test_verify_accepts_any_of_several_coasty_signatures() -> None:
    """During a secret rotation a header may carry two v1 values; one matching is enough."""
    header = f"t={TIMESTAMP}, v1={'0' * 64}, v1={COASTY_HEX.upper()}"
    assert verify(SECRET, BODY, {"Coasty-Signature": header}, now=TIMESTAMP)


@pytest.mark.parametrize(
    ("body", "headers", "now", "message"),
    [
        (BODY + b" ", {"Coasty-Signature": f"t={TIMESTAMP},v1={COASTY_HEX}"}, TIMESTAMP, "match"),
        (BODY, {"Coasty-Signature": f"t={TIMESTAMP + 1},v1={COASTY_HEX}"}, TIMESTAMP, "match"),
        (BODY, {"Coasty-Signature": f"t={TIMESTAMP},v1={COASTY_HEX}"}, TIMESTAMP + 301, "old"),
        (BODY, {"Coasty-Signature": f"t={TIMESTAMP},v1={COASTY_HEX}"}, TIMESTAMP - 301, "future"),
        (BODY, {"Coasty-Signature": f"v1={COASTY_HEX}"}, TIMESTAMP, "t=<unix>"),
        (BODY, {"Coasty-Signature": f"t=soon,v1={COASTY_HEX}"}, TIMESTAMP, "Unix timestamp"),
        (BODY, {"Coasty-Signature": f"t={TIMESTAMP},v1=é{COASTY_HEX}"}, TIMESTAMP, "match"),
        (BODY, {}, TIMESTAMP, "no Coasty-Signature"),
        (
            BODY,
            {
                "webhook-id": "whd_2",
                "webhook-timestamp": str(TIMESTAMP),
                "webhook-signature": STANDARD_B64,
            },
            TIMESTAMP,
            "does not match",
        ),
        (
            BODY,
            {
                "webhook-id": "whd_1",
                "webhook-timestamp": str(TIMESTAMP),
                "webhook-signature": "v2," + STANDARD_B64[3:],
            },
            TIMESTAMP,
            "does not match",
        ),
    ],
)
def test_verify_refuses_what_is_not_authentic(
    body: bytes, headers: dict[str, str], now: int, message: str
) -> None:
    """A changed body or timestamp, a stale or future time, or missing headers are refused."""
    with pytest.raises(WebhookVerificationError, match=message) as caught:
        verify(SECRET, body, headers, now=now)
    assert isinstance(caught.value, CuaflowError)


def test_verify_refuses_a_signature_made_with_another_secret() -> None:
    """A request signed with another run's secret does not verify under this one."""
    other = new_secret()
    headers = signature_headers(other, "whd_1", TIMESTAMP, BODY)
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, BODY, headers, now=TIMESTAMP)
    standard_only = {k: v for k, v in headers.items() if k != "Coasty-Signature"}
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, BODY, standard_only, now=TIMESTAMP)


def test_verify_tolerance_is_configurable() -> None:
    """A 10-minute-old request passes with a 900 s tolerance and fails with the default."""
    headers = signature_headers(SECRET, "whd_1", TIMESTAMP, BODY)
    assert verify(SECRET, BODY, headers, now=TIMESTAMP + 600, tolerance_seconds=900)
    with pytest.raises(WebhookVerificationError, match="old"):
        verify(SECRET, BODY, headers, now=TIMESTAMP + 600)
