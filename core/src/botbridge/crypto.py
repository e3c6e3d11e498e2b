"""Encryption of stored secrets (credentials, webhook secrets).

Fernet (AES-128-CBC + HMAC-SHA256) from `cryptography`, keyed from
BOTBRIDGE_SECRET_KEY through HKDF so any string of enough entropy works.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretBox:
    def __init__(self, secret_key: str) -> None:
        if len(secret_key) < 16:
            raise ValueError("BOTBRIDGE_SECRET_KEY must be at least 16 characters")
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"botbridge/secrets/v1").derive(
            secret_key.encode()
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def encrypt(self, plaintext: str) -> str:
        if not plaintext:
            return ""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        if not token:
            return ""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("stored secret cannot be decrypted with this BOTBRIDGE_SECRET_KEY") from exc


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
