"""Settings from the environment (`BOTBRIDGE_*`)."""

from __future__ import annotations

import logging
from typing import Any, Literal, get_args, get_origin

import annotated_types
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from botbridge.crypto import split_secret_keys
from botbridge.outbound import parse_allow_list

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
assert all(isinstance(logging.getLevelName(level), int) for level in LOG_LEVELS)


class SettingsInvalid(ValueError):
    """A setting the host cannot run with; `line` names it and what it accepts."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOTBRIDGE_", extra="ignore", validate_assignment=True)

    store: str = "sqlite:///botbridge.db"
    api_keys: SecretStr = SecretStr("")
    secret_key: SecretStr | None = None
    public_url: str | None = None
    # Lifts the outbound-URL policy for every URL (botbridge.outbound);
    # ALLOW_PRIVATE_WEBHOOK_URLS is its older name and means the same.
    allow_private_urls: bool = False
    allow_private_webhook_urls: bool = False
    outbound_allow: str | None = None
    load_plugins: str | None = None
    block_plugins: str | None = None
    trace_hooks: bool = False
    workers: int = Field(default=4, ge=1, le=256)
    event_workers: int = Field(default=4, ge=1, le=256)
    # How long a worker may hold a job before another worker (on any host
    # sharing the store) takes it over: the recovery time after a crash.
    job_lease: float = Field(default=60.0, gt=0)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Seconds a client gets to send its whole body; a slower one is answered 408.
    body_timeout: float = Field(default=10.0, gt=0)
    http_transport: Literal["aiohttp", "httpx"] = "aiohttp"
    http_timeout: float = Field(default=20.0, gt=0)
    http_max_connections: int = Field(default=200, ge=1)
    # Days of conversation history (conversations, their timelines, outbound messages) the store keeps.
    history_days: float = Field(default=30.0, gt=0)
    # The web console at /console and the API reference at /docs (off: both answer 404).
    console: bool = False
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("outbound_allow")
    @classmethod
    def _check_allow_list(cls, value: str | None) -> str | None:
        parse_allow_list(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    @field_validator("api_keys")
    @classmethod
    def _key_pairs(cls, value: SecretStr) -> SecretStr:
        _key_pairs(value)
        return value

    @field_validator("secret_key")
    @classmethod
    def _secret_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                split_secret_keys(value.get_secret_value())
            except ValueError:
                raise ValueError("one or more comma-separated keys of 16+ characters, newest first") from None
        return value

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    def bootstrap_keys(self) -> list[tuple[str, str]]:
        """`acct1:key1,acct2:key2` as (account, key) pairs."""
        return _key_pairs(self.api_keys)

    def plugin_allow_list(self) -> set[str] | None:
        return _names(self.load_plugins)

    def plugin_block_list(self) -> set[str]:
        return _names(self.block_plugins) or set()


def _names(value: str | None) -> set[str] | None:
    if value is None or not value.strip():
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def _key_pairs(value: SecretStr) -> list[tuple[str, str]]:
    pairs = []
    for item in value.get_secret_value().split(","):
        item = item.strip()
        if not item:
            continue
        account, sep, key = item.partition(":")
        if not sep or not account.strip() or len(key.strip()) < 8:
            raise ValueError("comma-separated account:key pairs, each key of 8+ characters")
        pairs.append((account.strip(), key.strip()))
    return pairs


def _accepts(name: str) -> str:
    """What a setting accepts, from its declaration."""
    field = Settings.model_fields[name]
    annotation: Any = field.annotation
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(choice) for choice in get_args(annotation))
    kind = {int: "a whole number", float: "a number", bool: "true or false"}.get(annotation, "text")
    bounds = []
    for rule in field.metadata:
        if isinstance(rule, annotated_types.Ge):
            bounds.append(f">= {rule.ge}")
        elif isinstance(rule, annotated_types.Gt):
            bounds.append(f"> {rule.gt}")
        elif isinstance(rule, annotated_types.Le):
            bounds.append(f"<= {rule.le}")
    return " ".join([kind, " and ".join(bounds)]).strip()


def settings_errors(error: ValidationError) -> list[str]:
    """One line per bad setting: its variable, the value given (unless secret) and what it accepts."""
    lines = []
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else ""
        if name not in Settings.model_fields:
            lines.append(f"botbridge: bad settings: {item['msg']}")
            continue
        variable = f"BOTBRIDGE_{name.upper()}"
        secret = Settings.model_fields[name].annotation in (SecretStr, SecretStr | None)
        given = "" if secret else f"={item['input']!r}"
        custom = item["type"] == "value_error"
        accepts = str(item["ctx"]["error"]) if custom else _accepts(name)
        lines.append(f"botbridge: {variable}{given} is not accepted; it takes {accepts}")
    return lines
