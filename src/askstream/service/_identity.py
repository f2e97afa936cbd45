"""Who is asking: the one place that maps a request's credentials to a user id.

Two ways in (``docs/security.md``):

- **Bearer tokens**, for programs: ``ASKSTREAM_TOKENS`` (``user:token,...``) or
  ``ASKSTREAM_TOKENS_FILE`` (``user token`` lines). ``Authorization: Bearer
  <token>`` acts as that user. With tokens configured every API call needs one.
- **Anonymous browser sessions**, for the page, when no tokens are configured:
  the first visit gets a signed cookie naming a fresh random user, so each
  browser sees only its own chats, with no login screen.

:meth:`Identities.identify` is the seam: single sign-on (OIDC) would be one
more branch there, and nothing else in the service would change.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ANONYMOUS",
    "COOKIE",
    "Identities",
    "Identity",
    "load_secret_key",
    "parse_tokens",
    "read_tokens_file",
]

COOKIE = "askstream_session"
#: Anonymous user ids start with this; a token's user name cannot contain ":".
ANONYMOUS = "anon:"
_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# 128 random bits, hex: as hard to guess as a token, and nothing in it to tamper with.
_SESSION = re.compile(r"[0-9a-f]{32}")
# A shorter token is within reach of guessing over the network.
MIN_TOKEN_LENGTH = 16
_SIGNATURE_CONTEXT = b"askstream session v1:"


@dataclass(frozen=True, slots=True)
class Identity:
    """The user a request acts as. ``new_cookie`` is set when the request had no
    valid session and this one was made for it: send it back with ``Set-Cookie``."""

    user: str
    new_cookie: str | None = None


def _check_pair(user: str, token: str, where: str) -> None:
    if not _USER.fullmatch(user):
        raise ValueError(
            f"{where}: user name {user[:64]!r} must be 1-64 letters, digits or ._@- "
            "(starting with a letter or digit)"
        )
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() or c == "," for c in token):
        raise ValueError(
            f"{where}: the token of {user!r} must be at least {MIN_TOKEN_LENGTH} characters "
            "without spaces or commas (python -c 'import secrets; print(secrets.token_urlsafe())')"
        )


def _add(tokens: dict[str, str], user: str, token: str, where: str) -> None:
    _check_pair(user, token, where)
    if token in tokens.values():
        raise ValueError(f"{where}: two users share one token")
    tokens[user] = token


def parse_tokens(text: str, where: str = "ASKSTREAM_TOKENS") -> dict[str, str]:
    """``"alice:tok1,bob:tok2"`` as ``{"alice": "tok1", "bob": "tok2"}``.

    Errors name the place and the user, never the token.

    >>> parse_tokens("alice:0123456789abcdef0123")
    {'alice': '0123456789abcdef0123'}
    """
    tokens: dict[str, str] = {}
    for number, pair in enumerate((p.strip() for p in text.split(",")), 1):
        if not pair:
            continue
        user, colon, token = pair.partition(":")
        if not colon:
            raise ValueError(f"{where}: pair {number} is not user:token")
        _add(tokens, user.strip(), token.strip(), where)
    return tokens


def read_tokens_file(path: Path) -> dict[str, str]:
    """A tokens file: one ``user token`` pair a line; blank lines and ``#`` comments skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        where = f"ASKSTREAM_TOKENS_FILE: cannot read {str(path)!r}"
        raise ValueError(f"{where}: {exc.strerror}") from None
    tokens: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()  # noqa: PLW2901 (the stripped line is the line)
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"ASKSTREAM_TOKENS_FILE: line {number} is not 'user token'")
        _add(tokens, parts[0], parts[1], f"ASKSTREAM_TOKENS_FILE line {number}")
    return tokens


def load_secret_key(data_dir: Path) -> bytes:
    """The key in ``data_dir/secret_key``, made on first use (mode 0600), so that
    sessions survive a restart. Workers starting together agree on one file."""
    path = data_dir / "secret_key"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    # Written whole under a name of our own, then linked to its place: a link
    # fails if the name exists (as O_EXCL), and a worker that lost the race
    # reads a whole key, never one still being written (empty).
    draft = data_dir / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(key)
        try:
            os.link(draft, path)
        except FileExistsError:  # another worker made it first: use theirs
            return path.read_bytes().strip()
    finally:
        draft.unlink()
    return key


class Identities:
    """Credentials to user ids: tokens, else (with no tokens) signed anonymous sessions.

    >>> ids = Identities({"alice": "0123456789abcdef0123"}, secret_key=b"k")
    >>> ids.from_token("0123456789abcdef0123"), ids.from_token("nope"), ids.anonymous
    ('alice', None, False)
    >>> anon = Identities({}, secret_key=b"k")
    >>> made = anon.new_session()
    >>> anon.from_cookie(made.new_cookie) == made.user
    True
    """

    def __init__(self, tokens: Mapping[str, str], *, secret_key: bytes) -> None:
        # Digests, compared in constant time against every entry: the time a
        # check takes says nothing about how close a guess was.
        self._tokens = [(hashlib.sha256(t.encode()).digest(), u) for u, t in tokens.items()]
        self._key = secret_key
        #: Anonymous browser sessions are the way in only while no tokens are configured.
        self.anonymous = not self._tokens

    def from_token(self, token: str) -> str | None:
        """The user holding ``token``, or ``None``."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found = None
        for known, user in self._tokens:
            if hmac.compare_digest(known, digest):
                found = user
        return found

    def _sign(self, session: str) -> str:
        mac = hmac.new(self._key, _SIGNATURE_CONTEXT + session.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()

    def from_cookie(self, value: str) -> str | None:
        """The anonymous user a session cookie names, if its signature holds."""
        session, dot, signature = value.partition(".")
        if not dot or not _SESSION.fullmatch(session):
            return None
        if not hmac.compare_digest(signature.encode(), self._sign(session).encode()):
            return None
        return ANONYMOUS + session

    def new_session(self) -> Identity:
        """A fresh anonymous user and the cookie value that names it."""
        session = secrets.token_hex(16)
        return Identity(ANONYMOUS + session, f"{session}.{self._sign(session)}")
