"""The simulator's JSON answers, shared by every route module."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

__all__ = ["IDENTITY", "error_answer", "json_answer"]


def json_answer(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def error_answer(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The spec's responseError shape: {"message": str, "type": str}."""
    return json_answer(status, {"message": message, "type": kind}, headers)


# Who made the request ("basic:<client id>", "bearer:<token>", "oauth:<client id>"), set once
# the credentials are checked.
IDENTITY = web.RequestKey("identity", str)
