"""Database URLs: which database, and how to name one without its password.

`sqlite:///relative/path.db`, `sqlite:////absolute/path.db` (SQLAlchemy's spelling), or
`postgresql://user:password@host:port/name?options` (libpq's; `postgres://` too).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

SCHEMES = {"sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql"}


def dialect_of(url: str) -> str:
    """`sqlite` or `postgresql`; ValueError for anything else (the message never repeats the URL)."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ValueError("must start with sqlite:/// or postgresql://")
    if SCHEMES[scheme] == "sqlite" and not sqlite_path(url):
        raise ValueError("sqlite:/// needs a file path (sqlite:///data/hailuo.db)")
    return SCHEMES[scheme]


def sqlite_path(url: str) -> str:
    """The file of a `sqlite:///path` URL (relative unless it has a fourth slash)."""
    return unquote(url.split("://", 1)[1].removeprefix("/").split("?", 1)[0])


def url_password(url: str) -> str | None:
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def redact_url(url: str) -> str:
    """The URL with its password masked: what logs and error messages may show."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return "(a database URL that cannot be read)"
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))
