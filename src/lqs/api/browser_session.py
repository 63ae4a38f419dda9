"""The dashboard's browser session: its cookies and its CSRF tokens.

- **The session cookie** (:data:`SESSION_COOKIE`) carries the signed-in user's access
  token, the JWT ``POST /auth/login`` issues, so a page verifies it as the API verifies a
  bearer token. It is ``HttpOnly`` (no script reads it), ``SameSite=Lax`` (not sent on
  cross-site POSTs, still sent when a link from elsewhere opens a page), ``Secure`` when
  the request came over https or the service's public address
  (``LQS_PUBLIC_BASE_URL``) is https, scoped to ``/app`` and expires with the token.
- **CSRF tokens** are signed double-submit tokens (OWASP's "signed double-submit
  cookie"): a form carries ``<random>.<HMAC(key, binding, random)>``, where the binding is
  the session cookie's value once signed in, else the pre-session cookie
  (:data:`PRESESSION_COOKIE`, random, set by the first page that has a form). A request
  from another site cannot read either cookie, so it cannot compute a token that verifies;
  a token stolen from one session does not verify in another.

Forms send the token as the field :data:`CSRF_FIELD`; htmx requests as the header
:data:`CSRF_HEADER` (``static/app.js`` copies it from ``<meta name="csrf-token">``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

SESSION_COOKIE = "lqs_session"
PRESESSION_COOKIE = "lqs_presession"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
COOKIE_PATH = "/app"
PRESESSION_MAX_AGE = 12 * 3600
"""Seconds a pre-session cookie lasts: a sign-in form left open longer must be reloaded."""
MIN_KEY_BYTES = 32
_MAX_COOKIE_CHARS = 4096
"""Longer values are not ours (browsers cap a cookie near 4 KB): ignored, not verified."""


SECURE_COOKIES_STATE = "secure_cookies"
"""The app state's flag (:func:`secure_cookies_from`): every cookie is ``Secure``."""


def secure_cookies_from(public_base_url: str) -> bool:
    """Whether cookies must be ``Secure`` whatever a request's scheme: the service's public
    address is https, so a request that arrives over http came through a TLS-terminating
    proxy (run without ``--proxy-headers``)."""
    return urlsplit(public_base_url.strip()).scheme.lower() == "https"


def is_https(request: Request) -> bool:
    """Whether the browser reached us over https: the request's scheme (behind a proxy: as
    uvicorn's ``--proxy-headers`` reports it from a trusted proxy's ``X-Forwarded-Proto``),
    or the app's :data:`SECURE_COOKIES_STATE` flag, set from an https public address."""
    app = request.scope.get("app")  # None for a request made outside an app
    return request.url.scheme == "https" or (
        app is not None and getattr(app.state, SECURE_COOKIES_STATE, False) is True
    )


def _set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=is_https(request),
        httponly=True,
        samesite="lax",
    )


def _cookie(request: Request, name: str) -> str | None:
    value = request.cookies.get(name)
    if not value or len(value) > _MAX_COOKIE_CHARS:
        return None
    return value


def set_session_cookie(response: Response, request: Request, token: str, max_age: int) -> None:
    """Sign the browser in: the session cookie carries ``token`` for ``max_age`` seconds
    (the token's own lifetime), and the pre-session cookie is dropped."""
    _set_cookie(response, request, SESSION_COOKIE, token, max_age)
    response.delete_cookie(PRESESSION_COOKIE, path=COOKIE_PATH)


def clear_session_cookie(response: Response, request: Request) -> None:
    """Sign the browser out: the session cookie is deleted."""
    response.delete_cookie(
        SESSION_COOKIE, path=COOKIE_PATH, secure=is_https(request), httponly=True, samesite="lax"
    )


def session_token(request: Request) -> str | None:
    """The access token in the request's session cookie, if any (not yet verified)."""
    return _cookie(request, SESSION_COOKIE)


def csrf_binding(request: Request) -> str | None:
    """What the request's CSRF token must be bound to: its session cookie, else its
    pre-session cookie; None when it has neither (no token can verify)."""
    return session_token(request) or _cookie(request, PRESESSION_COOKIE)


def presession_binding(request: Request) -> tuple[str, bool]:
    """The request's CSRF binding, and whether it is new: a random value the caller must
    set as the pre-session cookie (:func:`set_presession_cookie`) on its response, when the
    browser has no cookie to bind to (a first visit to the sign-in form)."""
    binding = csrf_binding(request)
    if binding is not None:
        return binding, False
    return secrets.token_urlsafe(32), True


def set_presession_cookie(response: Response, request: Request, binding: str) -> None:
    """Give the browser the pre-session cookie ``binding`` (see :func:`presession_binding`)."""
    _set_cookie(response, request, PRESESSION_COOKIE, binding, PRESESSION_MAX_AGE)


class CsrfTokens:
    """Issues and verifies CSRF tokens bound to a cookie's value, signed with ``key``.

    Raises:
        ValueError: ``key`` is shorter than :data:`MIN_KEY_BYTES`.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a CSRF key needs at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def _mac(self, binding: str, nonce: str) -> str:
        # Lengths first, so no two (binding, nonce) pairs sign the same message.
        message = f"{len(binding)}!{binding}!{len(nonce)}!{nonce}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def issue(self, binding: str) -> str:
        """A new token for forms of the browser whose cookie value is ``binding``."""
        nonce = secrets.token_urlsafe(16)
        return f"{nonce}.{self._mac(binding, nonce)}"

    def verify(self, binding: str | None, token: str | None) -> bool:
        """Whether ``token`` was issued by this key for ``binding``."""
        if not binding or not token or len(token) > 200:
            return False
        nonce, dot, mac = token.partition(".")
        if not dot or not nonce:
            return False
        return hmac.compare_digest(mac, self._mac(binding, nonce))

    def verify_request(self, request: Request, submitted: str | None) -> bool:
        """Whether ``submitted`` (the form's field, or else the :data:`CSRF_HEADER`)
        verifies for the request's cookies."""
        token = submitted or request.headers.get(CSRF_HEADER)
        return self.verify(csrf_binding(request), token)


def derive_csrf_key(secret: str) -> bytes:
    """The CSRF key derived from another secret (``LQS_JWT_SECRET``), so a deployment
    configures one secret and every API process signs alike; the label keeps the two
    uses apart."""
    return hmac.new(secret.encode(), b"lqs dashboard csrf v1", hashlib.sha256).digest()
