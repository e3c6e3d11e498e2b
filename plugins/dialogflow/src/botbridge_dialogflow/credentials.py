"""The connector's credentials (a service-account key) and config, checked.

Everything that can be wrong is reported as `ConfigInvalid(field, reason)`;
no message ever contains the key or any other value of the credentials.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from botbridge import ConfigInvalid

GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
DEFAULT_LANGUAGE = "en"

_PROJECT_ID = re.compile(r"^(?:[a-z0-9][a-z0-9.-]{0,62}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_EMAIL = re.compile(r"^[^@\s]{1,128}@[A-Za-z0-9.-]{1,253}$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8}){0,3}$")
_LOCATION = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")
_AGENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_TIME_ZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+/-]{0,63}$")
PLATFORMS = frozenset(
    {
        "PLATFORM_UNSPECIFIED",
        "FACEBOOK",
        "SLACK",
        "TELEGRAM",
        "KIK",
        "SKYPE",
        "LINE",
        "VIBER",
        "ACTIONS_ON_GOOGLE",
        "GOOGLE_HANGOUTS",
    }
)


@dataclass(frozen=True)
class ServiceAccount:
    project_id: str
    client_email: str
    private_key_pem: str = field(repr=False)
    private_key_id: str = ""
    token_uri: str = ""

    @property
    def audience(self) -> str:
        """The `aud` of the JWT grant: always Google's token URL.

        google-auth signs with this constant whatever the key file's
        `token_uri` says (an old key file may name the retired
        `accounts.google.com/o/oauth2/token`).
        """
        return GOOGLE_TOKEN_URL

    @property
    def cache_key(self) -> str:
        """Identifies this exact key: the same account with another key gets another token."""
        material = "\0".join((self.client_email, self.private_key_id, self.private_key_pem))
        return hashlib.sha256(material.encode()).hexdigest()


_ENVIRONMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Settings:
    """The connector config keys this backend reads, with their defaults."""

    language_code: str = DEFAULT_LANGUAGE
    location: str | None = None
    base_url: str | None = None
    token_url: str | None = None
    agent: str | None = None
    time_zone: str | None = None
    platform: str | None = None
    environment: str | None = None  # a published version; None is the draft agent
    channel: str | None = None  # CX: selects the channel-specific responses


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    """The RSA key of a PEM string, or `ConfigInvalid` without a word of the key."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnicodeError):
        raise ConfigInvalid("credentials.private_key", "is not a PEM-encoded, unencrypted private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigInvalid("credentials.private_key", "must be an RSA key")
    if key.key_size < 2048:
        raise ConfigInvalid("credentials.private_key", "must be an RSA key of at least 2048 bits")
    return key


def _text(data: dict[str, Any], name: str, *, required: bool) -> str:
    value = data.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ConfigInvalid(f"credentials.{name}", "must be a string")
    if required and not value.strip():
        raise ConfigInvalid(f"credentials.{name}", "is required")
    return value.strip() if name != "private_key" else value


def parse_service_account(credentials: str) -> ServiceAccount:
    """Parse and check a service-account key file's content (as the seed sends it)."""
    if not isinstance(credentials, str) or not credentials.strip():
        raise ConfigInvalid("credentials", "must be the service-account key file's JSON content")
    try:
        data = json.loads(credentials)
    except ValueError:
        raise ConfigInvalid("credentials", "is not valid JSON") from None
    if not isinstance(data, dict):
        raise ConfigInvalid("credentials", "must be a JSON object (the service-account key file)")
    if data.get("type") != "service_account":
        raise ConfigInvalid("credentials.type", 'must be "service_account"')
    project_id = _text(data, "project_id", required=True)
    if not _PROJECT_ID.match(project_id):
        raise ConfigInvalid("credentials.project_id", "is not a Google Cloud project id")
    private_key = _text(data, "private_key", required=True)
    load_private_key(private_key)
    client_email = _text(data, "client_email", required=True)
    if not _EMAIL.match(client_email):
        raise ConfigInvalid("credentials.client_email", "is not an e-mail address")
    private_key_id = _text(data, "private_key_id", required=False)
    if len(private_key_id) > 128:
        raise ConfigInvalid("credentials.private_key_id", "is too long")
    token_uri = _text(data, "token_uri", required=False)
    if token_uri:
        _check_url(token_uri, "credentials.token_uri")
    return ServiceAccount(
        project_id=project_id,
        client_email=client_email,
        private_key_pem=private_key,
        private_key_id=private_key_id,
        token_uri=token_uri,
    )


def _check_url(value: str, name: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigInvalid(name, "must be an http(s) URL without query or fragment")
    return value


def _config_text(config: dict[str, Any], name: str) -> str | None:
    value = config.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigInvalid(f"config.{name}", "must be a non-empty string")
    return value.strip()


def parse_settings(config: dict[str, Any]) -> Settings:
    """Read this backend's keys of a connector config (other keys are core's)."""
    language = _config_text(config, "language_code") or DEFAULT_LANGUAGE
    if not _LANGUAGE.match(language):
        raise ConfigInvalid("config.language_code", "must be a language code such as en or pt-BR")
    location = _config_text(config, "location")
    if location is not None and not _LOCATION.match(location):
        raise ConfigInvalid("config.location", "must be a Dialogflow location such as europe-west2 or global")
    base_url = _config_text(config, "base_url")
    if base_url is not None:
        base_url = _check_url(base_url, "config.base_url").rstrip("/")
    token_url = _config_text(config, "token_url")
    if token_url is not None:
        _check_url(token_url, "config.token_url")
    agent = _config_text(config, "agent")
    if agent is not None and not _AGENT.match(agent):
        raise ConfigInvalid("config.agent", "must be a Dialogflow CX agent id")
    channel = _config_text(config, "channel")
    if channel is not None and agent is None:
        raise ConfigInvalid("config.channel", "selects CX channel-specific responses: it needs config.agent")
    environment = _config_text(config, "environment")
    if environment is not None and not _ENVIRONMENT.match(environment):
        raise ConfigInvalid("config.environment", "must be an environment id (letters, digits, - and _)")
    time_zone = _config_text(config, "time_zone")
    if time_zone is not None and not _TIME_ZONE.match(time_zone):
        raise ConfigInvalid("config.time_zone", "must be a time zone name such as Europe/Paris")
    platform = _config_text(config, "platform")
    if platform is not None:
        platform = platform.upper()
        if platform not in PLATFORMS:
            raise ConfigInvalid("config.platform", "must be one of " + ", ".join(sorted(PLATFORMS)))
    return Settings(
        language_code=language,
        location=location,
        base_url=base_url,
        token_url=token_url,
        agent=agent,
        time_zone=time_zone,
        platform=platform,
        environment=environment,
        channel=channel,
    )
