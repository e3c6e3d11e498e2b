from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botbridge.crypto import SecretBox, hash_api_key, key_file_secret


@given(st.text(max_size=200))
def test_round_trip(plaintext: str) -> None:
    box = SecretBox("a-secret-key-of-enough-length")
    token = box.encrypt(plaintext)
    assert box.decrypt(token) == plaintext
    if len(plaintext) >= 4:
        assert plaintext not in token


def test_another_key_cannot_decrypt() -> None:
    token = SecretBox("first-key-0123456789").encrypt("credential")
    with pytest.raises(ValueError, match="cannot be decrypted"):
        SecretBox("second-key-0123456789").decrypt(token)


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        SecretBox("short")


def test_key_file_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "db.key"
    first = key_file_secret(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key_file_secret(path) == first
    assert len(first) >= 32


def test_api_keys_are_hashed() -> None:
    assert hash_api_key("k1") != "k1" and len(hash_api_key("k1")) == 64
    assert hash_api_key("k1") == hash_api_key("k1") != hash_api_key("k2")
