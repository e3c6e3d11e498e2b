"""Moved to `botbridge.fakes` (the demo needs it at run time); kept for imports written before."""

from botbridge.fakes import BotFake, ChannelFake, digits

__all__ = ["BotFake", "ChannelFake", "digits"]
