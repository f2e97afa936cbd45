"""The service's front gate, as plain ASGI middleware (``docs/security.md``).

- :class:`SiteGuard`: only the ``Host`` names we serve (DNS rebinding), and no
  state-changing request that a browser made for another site (CSRF).
- :class:`Identify`: every request acts as a user (tokens, or anonymous
  sessions); an API call without one is 401.
- :class:`SecurityHeaders`: the page may not be framed, sniffed or fed
  scripts from elsewhere.

CORS itself is Starlette's ``CORSMiddleware``, installed between the two
first, for the origins the operator allows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._identity import COOKIE, Identities
from ._middleware import reject

__all__ = [
    "CSP",
    "METRICS_PATH",
    "PUBLIC_PATHS",
    "USER_KEY",
    "Identify",
    "SecurityHeaders",
    "SiteGuard",
    "host_name",
]

#: Where the user of a request is kept in its ASGI scope.
USER_KEY = "askstream.user"
#: API paths that anyone may call: probes must not need a token.
PUBLIC_PATHS = frozenset({"/api/health", "/api/ready"})
#: Prometheus's scrape: it needs a token like the API when there are tokens, and
#: without tokens it gets no session (a scraper is nobody's browser).
METRICS_PATH = "/metrics"
_API_PREFIXES = ("/api/", "/v1/")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_ECHO = 100  # characters of a refused value quoted back

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),  # frame-ancestors' twin for browsers without CSP 2
)


def _has_body(headers: Headers) -> bool:
    return "content-length" in headers or "transfer-encoding" in headers


def host_name(host: str) -> str:
    """A ``Host`` header's name without its port, lower-cased.

    >>> host_name("Example.COM:8000"), host_name("[::1]:8000"), host_name("127.0.0.1")
    ('example.com', '[::1]', '127.0.0.1')
    """
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() else host


class SiteGuard:
    """400 for a ``Host`` we do not serve; 403 for a browser's cross-site write.

    ``allowed_hosts`` are names (``api.example.com``), ``.example.com`` for a
    domain and its subdomains, or ``*`` for any. A request with an unsafe
    method (``POST``, ``DELETE``, ...) is refused when its ``Origin`` is neither
    our own (the ``Host`` it was sent to) nor one of ``cors_origins``, or, with
    no ``Origin``, when ``Sec-Fetch-Site`` says another site made it. An origin
    that only ``*`` allows may not write with the session cookie. Programs
    (curl, the Python client) send neither header and pass. So does the
    founding guide's page, which posts its JSON as ``text/event-stream`` from
    our own origin: the content type is not what we judge.
    """

    def __init__(
        self, app: ASGIApp, *, allowed_hosts: Collection[str], cors_origins: Collection[str]
    ) -> None:
        self.app = app
        self._any_host = "*" in allowed_hosts
        self._hosts = frozenset(h.lower() for h in allowed_hosts if not h.startswith("."))
        self._domains = tuple(h.lower() for h in allowed_hosts if h.startswith("."))
        self._origins = frozenset(o.lower().rstrip("/") for o in cors_origins)
        self._any_origin = "*" in self._origins

    def host_allowed(self, host: str) -> bool:
        if self._any_host:
            return True
        name = host_name(host)
        return name in self._hosts or any(
            name.endswith(domain) or name == domain[1:] for domain in self._domains
        )

    def origin_allowed(self, origin: str, host: str, *, session: bool = False) -> bool:
        """Whether a page on ``origin`` may write; ``session``: the request carries
        the session cookie."""
        origin = origin.lower().rstrip("/")
        if origin in self._origins:
            return True
        # Our own origin: the page the service itself served. Compared without the
        # scheme, which a TLS-terminating proxy in front of us changes.
        parts = urlsplit(origin)
        if parts.scheme in ("http", "https") and parts.netloc == host.lower():
            return True
        # "*" is any origin without credentials (docs/security.md): CORS hides the
        # answer from it, but a write would still be done. The session cookie
        # rides on a same-site page's form or fetch (another port, a sibling
        # subdomain: SameSite=Lax lets it), which would act as its visitor.
        return self._any_origin and origin != "null" and not session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        close = _has_body(headers)
        if not self.host_allowed(host):
            await reject(
                send,
                400,
                f"Host {host[:_ECHO]!r} is not served here; the operator lists the names "
                "this service answers to in ASKSTREAM_ALLOWED_HOSTS",
                close=close,
            )
            return
        method = scope["method"]
        origin = headers.get("origin")
        preflight = method == "OPTIONS" and "access-control-request-method" in headers
        if method not in _SAFE_METHODS or preflight:
            if origin is not None:
                session = COOKIE in cookie_parser(headers.get("cookie", ""))
                refused = not self.origin_allowed(origin, host, session=session)
            else:
                refused = headers.get("sec-fetch-site") in ("cross-site", "same-site")
            if refused:
                await reject(
                    send,
                    403,
                    f"a page on another site ({(origin or 'unknown origin')[:_ECHO]}) may not "
                    "call this service; its operator allows origins in ASKSTREAM_CORS_ORIGINS",
                    close=close,
                )
                return
        await self.app(scope, receive, send)


def _is_api(path: str) -> bool:
    return (path.startswith(_API_PREFIXES) and path not in PUBLIC_PATHS) or path == METRICS_PATH


class Identify:
    """Put the requesting user in ``scope["askstream.user"]``, or refuse with 401.

    With tokens configured, an API call needs ``Authorization: Bearer``; with
    none, a request without a valid session cookie gets a new anonymous user
    and the cookie naming it. A wrong or unknown token is 401 in either case:
    a caller that meant to be somebody must not silently become nobody.
    """

    def __init__(self, app: ASGIApp, *, identities: Identities) -> None:
        self.app = app
        self.identities = identities

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        identities = self.identities
        headers = Headers(scope=scope)
        api = _is_api(scope["path"])
        authorization = headers.get("authorization")
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            user = identities.from_token(token.strip()) if scheme.lower() == "bearer" else None
            if user is None:
                if api:
                    await self._unauthorized(send, headers, "the bearer token is not valid")
                    return
            else:
                scope[USER_KEY] = user
            await self.app(scope, receive, send)
            return
        # With tokens, nobody without one is anybody; /metrics makes no session.
        if not identities.anonymous or scope["path"] == METRICS_PATH:
            if api and not identities.anonymous:
                await self._unauthorized(
                    send, headers, "this service needs a token: Authorization: Bearer <token>"
                )
                return
            await self.app(scope, receive, send)
            return
        cookie = cookie_parser(headers.get("cookie", "")).get(COOKIE)
        user = identities.from_cookie(cookie) if cookie else None
        if user is not None:
            scope[USER_KEY] = user
            await self.app(scope, receive, send)
            return
        made = identities.new_session()
        scope[USER_KEY] = made.user
        assert made.new_cookie is not None
        attributes = "; Path=/; HttpOnly; SameSite=Lax; Max-Age=31536000"
        if scope.get("scheme") in ("https", "wss"):
            attributes += "; Secure"
        set_cookie = (b"set-cookie", f"{COOKIE}={made.new_cookie}{attributes}".encode())

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), set_cookie]
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    @staticmethod
    async def _unauthorized(send: Send, headers: Headers, message: str) -> None:
        await reject(
            send,
            401,
            message,
            close=_has_body(headers),
            headers=[(b"www-authenticate", b'Bearer realm="askstream"')],
        )


class SecurityHeaders:
    """Add the page's defences (a strict CSP, no framing, no sniffing, a same-origin
    referrer) to every response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        # Not `async def`: it hands back the server's own awaitable, so a
        # stream's every token does not pay one more coroutine frame here.
        def send_with_headers(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(item for item in _SECURITY_HEADERS if item[0] not in present)
                message["headers"] = headers
            return send(message)

        await self.app(scope, receive, send_with_headers)
