"""Credentials and the API's address, read from the environment only.

Secrets never come from flags (they would land in shell history and `ps`),
and the `Credentials` object keeps them out of its repr so a traceback or a
debug print cannot show them.

A `.env` file in the working folder may supply what the environment does
not, but never mixes with it: when the real environment holds any credential
variable, the file's credentials and base URL are ignored entirely (with a
warning naming the file). Otherwise a `.env` planted in a shared folder could
pair its own client id with the environment's network id, or send the
environment's credentials to its own host.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import ipaddress
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ._exceptions import UsageError
from ._files import read_file, replacing
from ._ids import UUID_PATTERN
from ._text import hide_secrets, printable

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_HOST",
    "Credentials",
    "RefreshGrant",
    "Target",
    "check_token_file_api",
    "checked_base_url",
    "credentials_from_env",
    "needs_confirmation",
    "parse_duration",
    "resolve_base_url",
    "resolve_target",
    "save_refresh_token",
]

log = logging.getLogger("bulk")

DEFAULT_HOST = "api.spacebring.com"
DEFAULT_BASE_URL = f"https://{DEFAULT_HOST}"
# On a terminal, a batch larger than this asks before going to the default API.
CONFIRM_ABOVE = 500
ENVIRONMENT = "the environment"
CALLER = "the caller"
# Printable ASCII without spaces: anything else in a header is either refused by
# aiohttp (a line break: a ValueError deep in the client) or a copy-paste accident.
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
# Servers commonly refuse request headers above 8 KiB; a longer value is a mistake.
_MAX_SECRET = 8000
# Any of these in the real environment means the credentials come from there:
# a .env then supplies neither credentials nor the base URL. The token file
# is one of them: a .env naming it could read its own refresh token into a run
# of the environment's client, or have the rotated one written where it can
# read it.
CREDENTIAL_VARIABLES = (
    "SPACEBRING_CLIENT_ID",
    "SPACEBRING_CLIENT_SECRET",
    "SPACEBRING_ACCESS_TOKEN",
    "SPACEBRING_NETWORK_ID",
    "SPACEBRING_REFRESH_TOKEN",
    "SPACEBRING_TOKEN_FILE",
)
_OAUTH_VARIABLES = ("SPACEBRING_CLIENT_ID", "SPACEBRING_CLIENT_SECRET", "SPACEBRING_NETWORK_ID")
# A base URL longer than this is a mistake (and must fit the token file).
_MAX_URL = 2000
# A refresh token is a few dozen characters; the file holds it and the API root it is for,
# each at most doubled by JSON's escapes (`"` and `\` are the only header-safe characters
# escaped).
_MAX_TOKEN_FILE = 2 * (_MAX_SECRET + _MAX_URL) + 64
_ENVIRONMENT_ONLY = (*CREDENTIAL_VARIABLES, "SPACEBRING_BASE_URL")


def _check_shape(name: str, value: str) -> None:
    """A credential fit for an HTTP header, or a `UsageError` naming it (never its value)."""
    if not _HEADER_SAFE.fullmatch(value):
        raise UsageError(
            f"{name} must be printable ASCII without spaces, line breaks or other control "
            "characters (its value is not shown)"
        )
    if len(value) > _MAX_SECRET:
        raise UsageError(f"{name} is longer than {_MAX_SECRET} characters (its value is not shown)")


def _check_basic(id_name: str, client_id: str, secret_name: str, secret: str) -> None:
    _check_shape(id_name, client_id)
    _check_shape(secret_name, secret)
    if ":" in client_id:  # RFC 7617: the user-id of Basic authentication cannot hold a colon
        raise UsageError(f"{id_name} must not contain ':' (Basic authentication forbids it)")


def _check_network(name: str, network_id: str | None) -> None:
    if network_id is not None and not UUID_PATTERN.fullmatch(network_id.lower()):
        raise UsageError(f"{name} is not a network id (a UUID)")


@dataclass(frozen=True)
class RefreshGrant:
    """What an OAuth2 refresh (RFC 6749 section 6) needs; no field is ever shown."""

    client_id: str = field(repr=False)
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)
    # Where a rotated refresh token is kept for the next run (None: not kept).
    token_file: Path | None = field(default=None, repr=False)

    def form(self, refresh_token: str) -> dict[str, str]:
        """The form of a refresh with `refresh_token` (the latest, once rotated)."""
        return {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }


@dataclass(frozen=True)
class Credentials:
    scheme: str  # "basic", "bearer" or "oauth" (Bearer tokens from a refresh grant)
    _authorization: str = field(repr=False)
    network_id: str | None = field(default=None, repr=False)
    # Where they came from, for the first log line: "the environment", a .env path, ...
    source: str = field(default=CALLER, compare=False)
    # OAuth only: the Authorization header is then asked of a token provider per request.
    refresh_grant: RefreshGrant | None = field(default=None, repr=False, compare=False)

    @classmethod
    def basic(
        cls, client_id: str, client_secret: str, network_id: str | None = None
    ) -> Credentials:
        _check_basic("client_id", client_id, "client_secret", client_secret)
        _check_network("network_id", network_id)
        token = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        # The client id too: the contract counts it among the credentials that never
        # appear (a server echoed it into a review's report and page). Text that merely
        # contains it is hidden as well; a client id is rarely a word of prose.
        hide_secrets(token, f"{client_id}:{client_secret}", client_secret, client_id)
        return cls("basic", f"Basic {token}", network_id)

    @classmethod
    def bearer(cls, access_token: str, network_id: str) -> Credentials:
        _check_shape("access_token", access_token)
        _check_network("network_id", network_id)
        hide_secrets(access_token)
        return cls("bearer", f"Bearer {access_token}", network_id)

    @classmethod
    def oauth(
        cls,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        network_id: str,
        token_file: Path | None = None,
    ) -> Credentials:
        _check_basic("client_id", client_id, "client_secret", client_secret)
        _check_shape("refresh_token", refresh_token)
        _check_network("network_id", network_id)
        hide_secrets(f"{client_id}:{client_secret}", client_secret, client_id)
        hide_secrets(refresh_token, rotating="refresh")
        grant = RefreshGrant(client_id, client_secret, refresh_token, token_file)
        return cls("oauth", "", network_id, refresh_grant=grant)

    def headers(self) -> dict[str, str]:
        """The headers of every request; with OAuth, all but the Authorization."""
        headers = {"Authorization": self._authorization} if self._authorization else {}
        if self.network_id:
            headers["spacebring-network-id"] = self.network_id
        return headers

    def __repr__(self) -> str:
        return f"Credentials(scheme={self.scheme!r}, <hidden>)"

    __str__ = __repr__


@dataclass(frozen=True)
class _Settings:
    """The SPACEBRING_* variables, and where each came from (the environment or a .env)."""

    values: dict[str, str]
    origin: dict[str, str]
    # Why variables of a .env were ignored (names and the file only, never values).
    ignored: str | None = None

    def get(self, name: str) -> str:
        return self.values.get(name, "").strip()

    def oauth_names(self) -> tuple[str, ...] | None:
        """The variables of an OAuth refresh grant, when a refresh token or its file is set."""
        held = [n for n in ("SPACEBRING_REFRESH_TOKEN", "SPACEBRING_TOKEN_FILE") if self.get(n)]
        return (*_OAUTH_VARIABLES, *held) if held else None

    def credential_names(self) -> tuple[str, ...] | None:
        """The variables that will authenticate: OAuth first, then Basic, then Bearer."""
        oauth = self.oauth_names()
        if oauth is not None:
            return oauth if all(self.get(name) for name in _OAUTH_VARIABLES) else None
        for pair in (
            ("SPACEBRING_CLIENT_ID", "SPACEBRING_CLIENT_SECRET"),
            ("SPACEBRING_ACCESS_TOKEN", "SPACEBRING_NETWORK_ID"),
        ):
            if all(self.get(name) for name in pair):
                return pair
        return None

    def credentials_origin(self) -> str | None:
        names = self.credential_names()
        if names is None:
            return None
        return " and ".join(dict.fromkeys(self.origin[name] for name in names))


# .env files already warned about in this process (a run reads its settings more than once).
_WARNED: set[str] = set()


def _dotenv(path: Path) -> dict[str, str | None]:
    """A .env file's NAME=value lines, as python-dotenv parses them.

    No ${VAR} interpolation: a planted file could copy any variable of the real
    environment into a value (a base URL, say) and so off this machine. Through the
    parser itself rather than `dotenv_values`, whose warning for a bad line names no
    file and came twice a run: here it names the file and its lines, once.
    """
    from dotenv.parser import parse_stream

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{printable(path, 200)}: not UTF-8 text") from None
    bindings = list(parse_stream(io.StringIO(text)))
    bad = [str(b.original.line) for b in bindings if b.error]
    if bad and str(path) not in _WARNED:
        _WARNED.add(str(path))
        log.warning(f"{printable(path, 200)}: line {', '.join(bad[:10])} not NAME=value; ignored")
    return {b.key: b.value for b in bindings if b.key is not None and not b.error}


def _settings(env: Mapping[str, str] | None, dotenv: Path | None) -> _Settings:
    environment = {
        name: value
        for name, value in (os.environ if env is None else env).items()
        if name.startswith("SPACEBRING_")
    }
    path = Path(".env") if dotenv is None else dotenv
    from_file: dict[str, str] = {}
    if path.is_file():
        from_file = {
            name: value
            for name, value in _dotenv(path).items()
            if name.startswith("SPACEBRING_") and value is not None
        }
    held = [name for name in CREDENTIAL_VARIABLES if environment.get(name, "").strip()]
    # Those the environment sets itself would lose anyway: no warning for them.
    dropped = [n for n in _ENVIRONMENT_ONLY if n in from_file and n not in environment]
    dropped = dropped if held else []
    ignored = None
    if dropped:
        ignored = (
            f"ignoring {', '.join(dropped)} in {path}: the environment holds credentials "
            f"({', '.join(held)}), and a .env never mixes with them or redirects them"
        )
        from_file = {k: v for k, v in from_file.items() if k not in dropped}
    values = {**from_file, **environment}  # the real environment wins, as with every dotenv tool
    origin = {name: (ENVIRONMENT if name in environment else str(path)) for name in values}
    return _Settings(values, origin, ignored)


def credentials_from_env(
    env: Mapping[str, str] | None = None, *, dotenv: Path | None = None
) -> Credentials:
    """The credentials in the environment (or .env), checked for shape before any request."""
    settings = _settings(env, dotenv)
    names = settings.credential_names()
    if names is None:
        note = f" ({settings.ignored})" if settings.ignored else ""
        if settings.oauth_names() is not None:
            missing = [n for n in _OAUTH_VARIABLES if not settings.get(n)]
            raise UsageError(
                "an OAuth refresh token (SPACEBRING_REFRESH_TOKEN or SPACEBRING_TOKEN_FILE) "
                f"also needs {', '.join(missing)}{note}"
            )
        if settings.get("SPACEBRING_ACCESS_TOKEN"):
            raise UsageError(
                f"SPACEBRING_ACCESS_TOKEN is set but SPACEBRING_NETWORK_ID is not{note}"
            )
        if settings.get("SPACEBRING_CLIENT_ID") or settings.get("SPACEBRING_CLIENT_SECRET"):
            raise UsageError(f"set both SPACEBRING_CLIENT_ID and SPACEBRING_CLIENT_SECRET{note}")
        raise UsageError(
            "no credentials: set SPACEBRING_CLIENT_ID and SPACEBRING_CLIENT_SECRET, or "
            f"SPACEBRING_ACCESS_TOKEN and SPACEBRING_NETWORK_ID (environment or .env){note}"
        )
    first, second = names[:2]
    network = settings.get("SPACEBRING_NETWORK_ID") or None
    _check_network("SPACEBRING_NETWORK_ID", network)
    if len(names) > 2:
        credentials = _oauth_credentials(settings)
    elif first == "SPACEBRING_CLIENT_ID":
        _check_basic(first, settings.get(first), second, settings.get(second))
        credentials = Credentials.basic(settings.get(first), settings.get(second), network)
    else:
        _check_shape(first, settings.get(first))
        credentials = Credentials.bearer(settings.get(first), settings.get(second))
    return dataclasses.replace(credentials, source=settings.credentials_origin() or ENVIRONMENT)


def _oauth_credentials(settings: _Settings) -> Credentials:
    """OAuth from the variables: the token file's refresh token (the latest) wins."""
    client_id, secret = (
        settings.get("SPACEBRING_CLIENT_ID"),
        settings.get("SPACEBRING_CLIENT_SECRET"),
    )
    _check_basic("SPACEBRING_CLIENT_ID", client_id, "SPACEBRING_CLIENT_SECRET", secret)
    named = settings.get("SPACEBRING_TOKEN_FILE")
    token_file = Path(named) if named else None
    refresh_token = settings.get("SPACEBRING_REFRESH_TOKEN")
    kept = None if token_file is None else _read_token_file(token_file)[0]
    if kept is None and not refresh_token:
        raise UsageError(
            f"SPACEBRING_TOKEN_FILE {printable(named, 200)} does not exist yet: set "
            "SPACEBRING_REFRESH_TOKEN for the first run (the file then keeps its successors)"
        )
    if kept is None:
        _check_shape("SPACEBRING_REFRESH_TOKEN", refresh_token)
    network = settings.get("SPACEBRING_NETWORK_ID")
    return Credentials.oauth(client_id, secret, kept or refresh_token, network, token_file)


def _api_root(base_url: str) -> str:
    """`base_url` as one API root compares with another: scheme and host in lower case, no
    default port, no trailing slash."""
    parts = urlsplit(base_url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = "" if parts.port in (None, {"https": 443, "http": 80}.get(scheme)) else f":{parts.port}"
    return f"{scheme}://{host}{port}{parts.path.rstrip('/')}"


def check_token_file_api(credentials: Credentials | None, base_url: str) -> None:
    """Refuses to send a token file's refresh token to another API than the one it is for.

    Sent elsewhere (a staging host, the simulator), the token would be handed to a server
    that did not issue it, and that server's rotated token would replace it in the file:
    the next run against the real API would start from a token it never issued.
    """
    grant = None if credentials is None else credentials.refresh_grant
    if grant is None or grant.token_file is None:
        return
    # The file, not what was read of it: a caller's own Credentials.oauth(token_file=...)
    # never read it.
    _refuse_other_api(grant.token_file, base_url, "this run would send it to")


def _refuse_other_api(path: Path, base_url: str, doing: str) -> None:
    issuer = _read_token_file(path)[1]
    if issuer is None:
        return
    try:
        same = _api_root(issuer) == _api_root(base_url)
    except ValueError:  # a port out of range, a broken IPv6 address (a client built by hand)
        raise UsageError(
            "the base URL is not an http(s) URL bulk can send to (its value is not shown)"
        ) from None
    if not same:
        raise UsageError(
            f"the token file {printable(path, 200)} keeps the refresh token of "
            f"{printable(issuer, 200)}, and {doing} {printable(base_url, 200)}; a refresh "
            "token goes only to the API that issued it (set SPACEBRING_TOKEN_FILE to another "
            "file for this API)"
        )


def _read_token_file(path: Path) -> tuple[str | None, str | None]:
    """The refresh token kept in `path` and the API root it is for; (None, None) when there
    is no file yet.

    bulk writes `{"api": ROOT, "refresh_token": TOKEN}`; a file of one token alone (bulk's
    own before it named the API, or one written by hand) is for any API until bulk keeps
    a rotated token in it. Untrusted like any configuration: a link, another user's file,
    one that others may change or read, or anything but these is refused (exit 2), naming
    the file and never showing its content.
    """
    raw = read_file(path, _MAX_TOKEN_FILE, own="token file (SPACEBRING_TOKEN_FILE)")
    if raw is None:
        return None, None
    shown = printable(path, 200)
    if os.lstat(path).st_mode & 0o077:
        raise UsageError(
            f"{shown}: the token file may be read by other users; bulk keeps refresh tokens "
            f"only in files that only you can read (chmod 600 {shown})"
        )
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        text = ""
    kept = _token_and_api(text)
    token, api = kept or ("", None)
    if len(raw) >= _MAX_TOKEN_FILE or len(token) > _MAX_SECRET or not _HEADER_SAFE.fullmatch(token):
        raise UsageError(
            f"{shown}: the token file must hold one refresh token of printable ASCII "
            'without spaces, alone or as bulk writes it ({"api": ..., "refresh_token": ...}), '
            "and nothing else (its content is not shown)"
        )
    return token, api


def _token_and_api(text: str) -> tuple[str, str | None] | None:
    """(token, API root) of the file bulk writes, (token, None) of a token alone (even one
    that starts with `{`), or None when it is neither."""
    if not text.startswith(("{", "[")):
        return text, None
    try:
        data = json.loads(text)
    except RecursionError:  # nested past Python's limit: no token file of bulk's
        return None
    except ValueError:
        return text, None
    if not isinstance(data, dict) or set(data) != {"api", "refresh_token"}:
        return None
    token, api = data["refresh_token"], data["api"]
    if not isinstance(token, str) or not isinstance(api, str) or len(api) > _MAX_URL:
        return None
    try:
        _checked_url(api, "api")
    except UsageError:
        return None
    return token, api


def save_refresh_token(path: Path, token: str, api: str) -> None:
    """Keeps a rotated refresh token, and the API root that issued it, for the next run:
    mode 0600, atomic, never via a link.

    Synced to disk, and its folder after it replaced the old file: the old token no longer
    works, so a power cut must not leave the file holding it. A file that names another
    API by now (another run, at the same time) is left alone (a `UsageError`).
    """
    _check_shape("the rotated refresh token", token)
    _refuse_other_api(path, api, "this run, which rotated it, sends to")
    with replacing(path, "w", perms=0o600, encoding="ascii") as handle:
        handle.write(json.dumps({"api": api, "refresh_token": token}) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Target:
    """Where a run sends, and with which credentials (None for a dry run)."""

    base_url: str
    credentials: Credentials | None
    warnings: tuple[str, ...] = ()
    # What chose base_url: "--base-url", "SPACEBRING_BASE_URL in <where>", or None (the default).
    chosen_by: str | None = None

    @property
    def host(self) -> str:
        # netloc is the host and any port: userinfo was refused by resolve_base_url.
        return urlsplit(self.base_url).netloc

    def route(self) -> str:
        """`host (https, Basic credentials from the environment)`: never a credential."""
        scheme = urlsplit(self.base_url).scheme
        if self.credentials is None:
            return f"{self.host} ({scheme})"
        kind = {"oauth": "OAuth"}.get(self.credentials.scheme, self.credentials.scheme.capitalize())
        return f"{self.host} ({scheme}, {kind} credentials from {self.credentials.source})"

    def describe(self, *, dry_run: bool = False) -> str:
        """The first log line of a run."""
        if dry_run:
            return f"dry run: nothing will be sent to {self.route()}"
        return f"sending to {self.route()}"


def needs_confirmation(base_url: str, rows: int) -> bool:
    """Whether a person at a terminal should confirm before `rows` are sent to `base_url`.

    Loopback never asks (the simulator). Any other host than the production API
    always asks, whatever the size: a wrong or planted base URL would otherwise
    receive the credentials. The production API asks above CONFIRM_ABOVE rows.
    """
    host = urlsplit(base_url).hostname or ""
    if _is_loopback(host):
        return False
    if host != DEFAULT_HOST:
        return True
    return rows > CONFIRM_ABOVE


def _checked_url(chosen: str, name: str) -> str:
    parts = urlsplit(chosen)
    # Checked first, and the URL never echoed: `id:secret@host` must not reach
    # an error message (it even parses as a URL with the scheme `id`).
    if "@" in parts.netloc or "@" in chosen.split("/", 3)[0]:
        raise UsageError(f"{name} must not contain credentials; use the environment")
    if _SPACE_OR_CONTROL.search(chosen):
        raise UsageError(f"{name} must not contain spaces, line breaks or control characters")
    # Every request path is appended to the root: after a query or fragment it
    # would be mangled (`?x=1/support/...`), and a `;` parameter is no API's root.
    if "?" in chosen or "#" in chosen or ";" in parts.path:
        raise UsageError(
            f"{name} must be the API root alone, without a query (?), fragment (#) or "
            "parameters (;) (its value is not shown)"
        )
    if len(chosen) > _MAX_URL:
        raise UsageError(f"{name} is longer than {_MAX_URL} characters (its value is not shown)")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{name} is not an http(s) URL with a host (e.g. https://api.example.com)")
    try:
        port = parts.port  # urllib raises on a port it cannot read
    except ValueError:
        port = 0
    if port == 0:
        raise UsageError(f"{name} has a port that is not a number from 1 to 65535")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise UsageError(
            f"refusing plain http to {parts.hostname}: credentials travel only over https "
            "(plain http is allowed for loopback addresses, e.g. the simulator)"
        )
    return chosen.rstrip("/")


def resolve_target(
    url: str | None,
    credentials: Credentials | None = None,
    *,
    need_credentials: bool = True,
    env: Mapping[str, str] | None = None,
    dotenv: Path | None = None,
) -> Target:
    """The API root and credentials of a run, refusing to send them anywhere unintended.

    A base URL from a .env file counts only when the credentials in use come from
    that same file: a .env planted in a shared folder must not redirect the
    credentials of the real environment to its own host.
    """
    settings = _settings(env, dotenv)
    if credentials is None and need_credentials:
        credentials = credentials_from_env(env, dotenv=dotenv)
    warnings = [settings.ignored] if settings.ignored else []
    name, chosen = "--base-url", url
    chosen_by: str | None = name
    if not chosen:
        name, chosen = "SPACEBRING_BASE_URL", settings.get("SPACEBRING_BASE_URL")
        where = settings.origin.get(name, ENVIRONMENT)
        chosen_by = f"{name} in {where}" if chosen else None
        used = credentials.source if credentials is not None else settings.credentials_origin()
        if chosen and where != ENVIRONMENT and used != where:
            warnings.append(
                f"ignoring SPACEBRING_BASE_URL in {where}: the credentials in use do not "
                f"come from that file (they come from {used or 'nowhere yet'}); "
                f"put the base URL where the credentials are, or pass --base-url"
            )
            chosen, chosen_by = "", None
    base_url = _checked_url(chosen or DEFAULT_BASE_URL, name)
    check_token_file_api(credentials, base_url)
    return Target(base_url, credentials, tuple(warnings), chosen_by)


def checked_base_url(url: str, name: str) -> str:
    """`url` as an API root (the rules of --base-url), or a `UsageError` naming `name`."""
    return _checked_url(url, name)


def resolve_base_url(
    url: str | None, env: Mapping[str, str] | None = None, *, dotenv: Path | None = None
) -> str:
    """The API root alone (no credentials needed), with the same .env rule as a run."""
    target = resolve_target(url, need_credentials=False, env=env, dotenv=dotenv)
    for warning in target.warnings:
        log.warning(warning)
    return target.base_url


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
