"""Rich content as text, and answers mapped back to the option chosen.

Buttons, quick replies, suggested actions and cards reach a text-only
channel as numbered lines; a reply of "2" (or the exact label, in any case)
is mapped back to the second option's value.
"""

from __future__ import annotations

import mimetypes
import re
from urllib.parse import urlsplit

from botbridge.channel import Capabilities
from botbridge.models import InboundMessage, Media, Option, OutboundMessage, Reply

_NUMBER = re.compile(r"^\s*#?\s*(\d{1,3})\s*[.)]?\s*$")


def numbered(options: list[Option], start: int = 1) -> str:
    return "\n".join(f"{i}. {option.label}" for i, option in enumerate(options, start=start))


def as_text(reply: Reply, *, media_as_links: bool = True, option_start: int = 1) -> str:
    """The reply as plain text: its text, options numbered from `option_start`, media links."""
    parts = [reply.text.strip()] if reply.text.strip() else []
    if reply.options:
        parts.append(numbered(reply.options, option_start))
        parts.append("Reply with a number.")
    if media_as_links:
        parts.extend(m.url if not m.caption else f"{m.caption}: {m.url}" for m in reply.media)
    return "\n".join(parts)


def fitted(message: OutboundMessage, capabilities: Capabilities) -> OutboundMessage:
    """An MT as its channel can show it: options numbered in the text, media as links, where it has none."""
    if not (message.options and not capabilities.options) and not (message.media and not capabilities.media):
        return message
    text = as_text(
        Reply(text=message.text, options=message.options, media=message.media),
        media_as_links=not capabilities.media,
        option_start=message.option_start,
    )
    media = message.media if capabilities.media else []
    return message.model_copy(update={"text": text, "options": [], "media": media})


def match_option(text: str, options: list[Option]) -> Option | None:
    """The option a user's answer picks: its number, or its exact label."""
    if not options:
        return None
    number = _NUMBER.match(text)
    if number:
        index = int(number.group(1))
        return options[index - 1] if 1 <= index <= len(options) else None
    folded = text.strip().casefold()
    for option in options:
        if option.label.strip().casefold() == folded:
            return option
    return None


def media_kind(media: Media) -> str:
    """The kind of a medium (image, video, audio or file): from its content type, else its URL's extension."""
    content_type = media.content_type or mimetypes.guess_type(urlsplit(media.url).path)[0] or ""
    major = content_type.split("/", 1)[0].lower()
    return major if major in ("image", "video", "audio") else "file"


def describe_media(message: InboundMessage, text: str | None = None) -> InboundMessage:
    """The MO as a text-only bot gets it: its media described after its text.

    `text` is the connector's description for every item; by default each is
    named by its kind ("[image] [file]").
    """
    if not message.media:
        return message
    described = text if text is not None else " ".join(f"[{media_kind(m)}]" for m in message.media)
    joined = " ".join(part for part in (message.text.strip(), described) if part)
    return message.model_copy(update={"text": joined})
