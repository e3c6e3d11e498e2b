"""The Bot Framework's own models as the oracle of the activities exchanged with the fake.

Needs the test extra (botbuilder-schema), which the plugin itself never imports.

The fake is written from the same reading of the docs as the plugin, so it
cannot catch a misreading on its own. Every activity a test posts to any
`FakeDirectLine` and every activity a fake returns is deserialized with
botbuilder-schema's `Activity` (cards by their content type's card class) and
must serialize back to the same JSON: a misspelled key, a wrong type (msrest
silently turns `5` into `"5"`) or a field the schema does not have is a test
failure (the plugin's tests install `ActivityOracle` on every fake and fail
at the end of a test that produced one).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botbuilder.schema import (
    Activity,
    ActivityTypes,
    AnimationCard,
    AudioCard,
    HeroCard,
    OAuthCard,
    ReceiptCard,
    SigninCard,
    ThumbnailCard,
    VideoCard,
)
from msrest.exceptions import DeserializationError
from msrest.serialization import Model

from botbridge_azure_directline import activities
from botbridge_azure_directline.testing import POSTED

# The card classes of the content types botbuilder-schema models (Adaptive Cards have none there).
CARD_MODELS: dict[str, type[Model]] = {
    activities.HERO_CARD: HeroCard,
    activities.THUMBNAIL_CARD: ThumbnailCard,
    activities.ANIMATION_CARD: AnimationCard,
    activities.AUDIO_CARD: AudioCard,
    activities.VIDEO_CARD: VideoCard,
    activities.RECEIPT_CARD: ReceiptCard,
    activities.SIGNIN_CARD: SigninCard,
    activities.OAUTH_CARD: OAuthCard,
}
ACTIVITY_TYPES = frozenset(t.value for t in ActivityTypes)


def _comparable(model: type[Model], data: Any) -> Any:
    """`data` with its date-time fields parsed: msrest writes them back with milliseconds."""
    if not isinstance(data, dict):
        return data
    dates = {a["key"] for a in model._attribute_map.values() if a["type"] == "iso-8601"}
    return {k: _instant(v) if k in dates else v for k, v in data.items()}


def _instant(value: Any) -> Any:
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return value  # left as it is: the comparison then reports it


def differences(sent: Any, back: Any, path: str = "") -> list[str]:
    """Where `back` (what the model serialized) differs from `sent`, as JSON paths."""
    if isinstance(sent, dict) and isinstance(back, dict):
        found = []
        for key in sorted(sent.keys() | back.keys()):
            if key not in back:
                found.append(f"{path}.{key} is dropped (not in the model, or null)")
            elif key not in sent:
                found.append(f"{path}.{key} is added")
            else:
                found += differences(sent[key], back[key], f"{path}.{key}")
        return found
    if isinstance(sent, list) and isinstance(back, list) and len(sent) == len(back):
        return [d for n, (s, b) in enumerate(zip(sent, back, strict=True)) for d in differences(s, b, f"{path}[{n}]")]
    return [] if sent == back else [f"{path}: {sent!r} reads back as {back!r}"]


def round_trip(model: type[Model], data: Any, where: str) -> list[str]:
    """What is wrong with `data` as a `model`: it must deserialize and serialize back unchanged."""
    try:
        parsed = model.deserialize(data)
    except DeserializationError as exc:
        return [f"{where}: not a {model.__name__}: {exc}"]
    if parsed is None:
        return [f"{where}: not a {model.__name__}: {data!r}"]
    changed = differences(_comparable(model, data), _comparable(model, parsed.serialize()))
    return [f"{where} as a {model.__name__}: {change}" for change in changed]


def activity_problems(activity: Any, where: str) -> list[str]:
    """An activity checked against `Activity`, and each attachment's card against its card class."""
    problems = round_trip(Activity, activity, where)
    if problems:
        return problems
    if activity.get("type") not in ACTIVITY_TYPES:
        problems.append(f"{where}: type {activity.get('type')!r} is not one of ActivityTypes")
    for n, attachment in enumerate(activity.get("attachments") or []):
        model = CARD_MODELS.get(attachment.get("contentType")) if isinstance(attachment, dict) else None
        if model is not None:
            problems += round_trip(model, attachment.get("content"), f"{where}.attachments[{n}].content")
    return problems


@dataclass
class ActivityOracle:
    """A `FakeDirectLine.activity_checks` entry: collects problems instead of raising.

    Raising inside the fake would reach the plugin as an exception that a
    retry loop or the late-reply poller may swallow; the test fixture asserts
    `problems` is empty when the test ends instead.
    """

    checked: Counter[str] = field(default_factory=Counter)
    posted: list[Activity] = field(default_factory=list)  # what clients posted, as the official model
    problems: list[str] = field(default_factory=list)
    # Tests that post made-up bodies to probe the fake set this: those are not the plugin's.
    skip_posted: bool = False

    def __call__(self, direction: str, activity: dict[str, Any]) -> None:
        if direction == POSTED and self.skip_posted:
            return
        self.checked[direction] += 1
        found = activity_problems(activity, f"{direction} activity")
        self.problems += found
        if direction == POSTED and not found:
            posted = Activity.deserialize(activity)
            self.posted.append(posted)
            if not (posted.from_property and posted.from_property.id):
                self.problems.append(f"posted activity without from.id: {activity!r}")
