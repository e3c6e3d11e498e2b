"""Encryption of stored secrets (credentials, webhook secrets).

Fernet (AES-128-CBC + HMAC-SHA256) from `cryptography`, keyed from
BOTBRIDGE_SECRET_KEY through HKDF so any string of enough entropy works.
The setting may list several keys, comma-separated and newest first: the
newest encrypts, any of them decrypts (MultiFernet), so a key can be
replaced without a moment where stored secrets are unreadable.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def _fernet(secret_key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"botbridge/secrets/v1").derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def split_secret_keys(setting: str) -> list[str]:
    keys = [key.strip() for key in setting.split(",") if key.strip()]
    if not keys or any(len(key) < 16 for key in keys):
        raise ValueError("BOTBRIDGE_SECRET_KEY must be one or more comma-separated keys of at least 16 characters")
    return keys


OPENED_CACHE = 4096  # tokens kept decrypted: far more than the senders and connectors a host serves at once


class SecretBox:
    def __init__(self, secret_key: str) -> None:
        fernets = [_fernet(key) for key in split_secret_keys(secret_key)]
        self._newest = fernets[0]
        self._fernet = MultiFernet(fernets)
        self.key_count = len(fernets)
        # A token always opens to the same text (authenticated encryption), so
        # the records read on every message (a sender's and a connector's
        # credentials) are decrypted once, not per message.
        self._opened: dict[str, str] = {}

    def encrypt(self, plaintext: str) -> str:
        if not plaintext:
            return ""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        if not token:
            return ""
        opened = self._opened.get(token)
        if opened is not None:
            return opened
        try:
            opened = self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("stored secret cannot be decrypted with this BOTBRIDGE_SECRET_KEY") from exc
        if len(self._opened) >= OPENED_CACHE:
            self._opened.clear()
        self._opened[token] = opened
        return opened

    def is_newest(self, token: str) -> bool:
        """True when the newest key encrypted `token` (or it is empty): nothing to rotate."""
        if not token:
            return True
        try:
            self._newest.decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    def rotate(self, token: str) -> str:
        """`token` encrypted with the newest key; ValueError when no key decrypts it."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("stored secret cannot be decrypted with any BOTBRIDGE_SECRET_KEY") from exc


def hash_api_key(key: str) -> str:
    # API keys are long random strings, so a fast hash is enough; no salt is
    # needed to look a key up by its hash.
    return hashlib.sha256(key.encode()).hexdigest()


def generate_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def key_file_secret(path: Path) -> str:
    """Read, or create with mode 0600, a secret key kept beside a database.

    Used when BOTBRIDGE_SECRET_KEY is unset and the store is a local file, so
    a restart can still read what it stored.
    """
    if path.exists():
        return path.read_text().strip()
    secret = generate_secret()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    return secret
