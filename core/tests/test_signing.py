from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botbridge.errors import InvalidSignature
from botbridge.signing import (
    check_timestamp,
    hmac_digest,
    secrets_equal,
    standard_webhook_headers,
    verify_any_digest,
    verify_digest,
    verify_standard_webhook,
)


def test_hmac_matches_the_standard_library() -> None:
    assert hmac_digest("k", b"body") == hmac.new(b"k", b"body", hashlib.sha256).digest()
    assert hmac_digest(b"k", b"body", "sha1") == hmac.new(b"k", b"body", hashlib.sha1).digest()


def test_verify_digest_accepts_right_and_refuses_wrong() -> None:
    digest = hmac_digest("secret", b"payload")
    verify_digest(base64.b64encode(digest).decode(), digest)
    verify_digest(digest.hex(), digest, encoding="hex")
    for bad in (None, "", "!!!", base64.b64encode(b"x" * 32).decode(), digest.hex()):
        with pytest.raises(InvalidSignature):
            verify_digest(bad, digest)


@given(st.binary(min_size=1, max_size=64), st.text(max_size=80))
def test_refusals_never_contain_the_expected_value(expected: bytes, provided: str) -> None:
    try:
        verify_digest(provided, expected)
    except InvalidSignature as exc:
        assert base64.b64encode(expected).decode() not in str(exc)
        assert expected.hex() not in str(exc)


def test_verify_any_digest() -> None:
    digest = hmac_digest("s", b"x")
    verify_any_digest(["nope", base64.b64encode(digest).decode()], digest)
    with pytest.raises(InvalidSignature, match="missing"):
        verify_any_digest([], digest)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify_any_digest(["nope"], digest)


def test_timestamp_window() -> None:
    assert check_timestamp("1000", now=1100, window=300) == 1000
    assert check_timestamp(1_000_000, now=1_000_100, window=300) == 1_000_000
    assert check_timestamp(1_700_000_000_000, now=1_700_000_000, window=5) == 1_700_000_000  # milliseconds
    for bad in (None, "", "abc", "700", "1500", "nan", "inf"):
        with pytest.raises(InvalidSignature):
            check_timestamp(bad, now=1100, window=300)
    assert check_timestamp(1100 - 86000, now=1100, window=86400, future=300) == 1100 - 86000
    with pytest.raises(InvalidSignature):
        check_timestamp(1100 + 301, now=1100, window=86400, future=300)


def test_secrets_equal() -> None:
    assert secrets_equal("abc", "abc")
    assert not secrets_equal("abd", "abc")
    assert not secrets_equal(None, "abc")
    assert not secrets_equal("", "")


def test_standard_webhooks_reference_vector() -> None:
    # The example of the Standard Webhooks specification.
    headers = standard_webhook_headers(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    )
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    verify_standard_webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", headers, b'{"test": 2432232314}', now=1614265330)


def test_standard_webhooks_refusals() -> None:
    body = b'{"a": 1}'
    headers = standard_webhook_headers("plain-secret", "evt1", 1000, body)
    verify_standard_webhook("plain-secret", headers, body, now=1010)
    with pytest.raises(InvalidSignature):
        verify_standard_webhook("plain-secret", headers, body + b" ", now=1010)
    with pytest.raises(InvalidSignature):
        verify_standard_webhook("other-secret", headers, body, now=1010)
    with pytest.raises(InvalidSignature):
        verify_standard_webhook("plain-secret", headers, body, now=5000)
    rotated = {**headers, "webhook-signature": "v1,bm9wZQ== " + headers["webhook-signature"]}
    verify_standard_webhook("plain-secret", rotated, body, now=1010)
