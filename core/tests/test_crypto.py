from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

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


def test_a_token_is_opened_once_and_the_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    box = SecretBox("a-secret-key-of-enough-length")
    tokens = [box.encrypt(f"credential {i}") for i in range(3)]
    opened = []

    class Counting:
        def __init__(self, fernet: Any) -> None:
            self.fernet = fernet

        def decrypt(self, token: bytes) -> bytes:
            opened.append(token)
            return self.fernet.decrypt(token)  # type: ignore[no-any-return]

    monkeypatch.setattr(box, "_fernet", Counting(box._fernet))
    assert [box.decrypt(t) for t in tokens * 3] == [f"credential {i}" for i in range(3)] * 3
    assert len(opened) == 3
    # a token changed by one character is a new token: opened, and refused
    forged = tokens[0][:-2] + ("A" if tokens[0][-2] != "A" else "B") + tokens[0][-1]
    with pytest.raises(ValueError, match="cannot be decrypted"):
        box.decrypt(forged)
    monkeypatch.setattr("botbridge.crypto.OPENED_CACHE", 2)
    box.decrypt(SecretBox("a-secret-key-of-enough-length").encrypt("another"))
    assert len(box._opened) <= 2


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
