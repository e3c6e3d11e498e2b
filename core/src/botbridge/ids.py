"""Opaque, time-ordered ids.

22 characters of base62, like the ids SCG hands out. The first 8 characters
encode the creation time in milliseconds, so sorting ids sorts by creation
time; that is what list pagination relies on.

Ids are unique, not secret: nothing in botbridge is protected by an id being
hard to guess (every lookup is checked against the caller's account, every
webhook against its signature). So the random part comes from a fast
generator seeded from the OS, not from the OS on every call (a system call
per id was a few per cent of a host's CPU); a forked child reseeds.
"""

from __future__ import annotations

import os
import random
import threading
import time

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
LENGTH = 22
_TIME_CHARS = 8


def _encode(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        chars.append(ALPHABET[rest])
    return "".join(reversed(chars))


_RANDOM_SPACE = 62 ** (LENGTH - _TIME_CHARS)
_last = threading.Lock(), [0, 0]  # the last (millisecond, random part) handed out
_random = random.Random()  # seeded from os.urandom
os.register_at_fork(after_in_child=_random.seed)


def new_id(now: float | None = None) -> str:
    millis = int((time.time() if now is None else now) * 1000)
    random_part = _random.getrandbits(84) % _RANDOM_SPACE  # 14 base62 chars hold ~83.4 bits
    lock, last = _last
    with lock:
        # Ids made within one millisecond would sort at random (pagination
        # relies on id order being creation order): each one after the first
        # comes right above the one before.
        if millis == last[0] and random_part <= last[1] < _RANDOM_SPACE - 1:
            random_part = last[1] + 1
        last[0], last[1] = millis, random_part
    return _encode(millis, _TIME_CHARS) + _encode(random_part, LENGTH - _TIME_CHARS)
