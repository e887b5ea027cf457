"""The recalibration wizard: collect frames on the station, show acceptance, activate only on a click."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from edge_ad.config import EdgeAdConfig

__all__ = ["add_routes"]


def add_routes(app: FastAPI, config: EdgeAdConfig, page: Callable) -> None:
    """Register this page's routes on the console ``app``; ``page(request, template, user, **context)`` renders."""
