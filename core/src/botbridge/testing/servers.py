"""Moved to `botbridge.loopback` (the demo needs it at run time); kept for imports written before."""

from botbridge.loopback import free_port, listening_socket, serve_app

__all__ = ["free_port", "listening_socket", "serve_app"]
