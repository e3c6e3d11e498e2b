"""Core's embedded stores. Each module is a plugin registered by entry point."""
