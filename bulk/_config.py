"""Credentials and the API's address, read from the environment only.

Secrets never come from flags (they would land in shell history and `ps`),
and the `Credentials` object keeps them out of its repr so a traceback or a
debug print cannot show them.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ._errors import UsageError

__all__ = [
    "DEFAULT_BASE_URL",
    "Credentials",
    "credentials_from_env",
    "parse_duration",
    "resolve_base_url",
]

DEFAULT_BASE_URL = "https://api.spacebring.com"


@dataclass(frozen=True)
class Credentials:
    scheme: str  # "basic" or "bearer"
    _authorization: str = field(repr=False)
    network_id: str | None = field(default=None, repr=False)

    @classmethod
    def basic(
        cls, client_id: str, client_secret: str, network_id: str | None = None
    ) -> Credentials:
        token = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        return cls("basic", f"Basic {token}", network_id)

    @classmethod
    def bearer(cls, access_token: str, network_id: str) -> Credentials:
        return cls("bearer", f"Bearer {access_token}", network_id)

    def headers(self) -> dict[str, str]:
        headers = {"Authorization": self._authorization}
        if self.network_id:
            headers["spacebring-network-id"] = self.network_id
        return headers

    def __repr__(self) -> str:
        return f"Credentials(scheme={self.scheme!r}, <hidden>)"

    __str__ = __repr__


def _environment(env: Mapping[str, str] | None, dotenv: Path | None) -> dict[str, str]:
    values: dict[str, str] = {}
    path = Path(".env") if dotenv is None else dotenv
    if path.is_file():
        from dotenv import dotenv_values

        values.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    # The real environment wins over the file, as with every dotenv tool.
    values.update(os.environ if env is None else env)
    return values


def credentials_from_env(
    env: Mapping[str, str] | None = None, *, dotenv: Path | None = None
) -> Credentials:
    values = _environment(env, dotenv)
    client_id = values.get("SPACEBRING_CLIENT_ID", "").strip()
    secret = values.get("SPACEBRING_CLIENT_SECRET", "").strip()
    token = values.get("SPACEBRING_ACCESS_TOKEN", "").strip()
    network = values.get("SPACEBRING_NETWORK_ID", "").strip() or None
    if client_id and secret:
        return Credentials.basic(client_id, secret, network)
    if token and network:
        return Credentials.bearer(token, network)
    if token:
        raise UsageError("SPACEBRING_ACCESS_TOKEN is set but SPACEBRING_NETWORK_ID is not")
    if client_id or secret:
        raise UsageError("set both SPACEBRING_CLIENT_ID and SPACEBRING_CLIENT_SECRET")
    raise UsageError(
        "no credentials: set SPACEBRING_CLIENT_ID and SPACEBRING_CLIENT_SECRET, or "
        "SPACEBRING_ACCESS_TOKEN and SPACEBRING_NETWORK_ID (environment or .env)"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_base_url(
    url: str | None, env: Mapping[str, str] | None = None, *, dotenv: Path | None = None
) -> str:
    """The API root, refusing to send credentials in clear text off this machine."""
    chosen = url or _environment(env, dotenv).get("SPACEBRING_BASE_URL") or DEFAULT_BASE_URL
    parts = urlsplit(chosen)
    # Checked first, and the URL never echoed: `id:secret@host` must not reach
    # an error message (it even parses as a URL with the scheme `id`).
    if "@" in parts.netloc or "@" in chosen.split("/", 3)[0]:
        raise UsageError("base URL must not contain credentials; use the environment")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            "base URL is not an http(s) URL with a host (e.g. https://api.example.com)"
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise UsageError(
            f"refusing plain http to {parts.hostname}: credentials travel only over https "
            "(plain http is allowed for loopback addresses, e.g. the simulator)"
        )
    return chosen.rstrip("/")


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)?")
_UNIT = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, None: 1.0}


def parse_duration(value: str) -> float:
    """Seconds in `45s`, `90m`, `2h`, `1h30m`, `14d` (a bare number is seconds)."""
    text = value.strip().lower().replace(" ", "")
    total, position = 0.0, 0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise ValueError(f"{value!r} is not a duration like 45s, 90m, 2h, 1h30m or 14d")
    if total <= 0:
        raise ValueError(f"{value!r}: a duration must be longer than zero")
    return total
