"""The web service's former home, kept so ``from stream.webapp import WebServer, create_app`` still works:
the service itself is the package :mod:`stream.web` (a router a resource)."""
from __future__ import annotations

from .web import LiveSession, WebServer, WebState, create_app

__all__ = ["LiveSession", "WebServer", "WebState", "create_app"]
