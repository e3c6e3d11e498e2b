"""Moved to `botbridge.loopback` (the demo needs it at run time); kept for imports written before."""

from botbridge.loopback import free_port, serve_app

__all__ = ["free_port", "serve_app"]
