"""One-click unsubscribe links (RFC 8058): signed, expiring tokens naming one recipient.

Every email to a lead carries ``List-Unsubscribe: <{base}/u/{token}>`` and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``. The token is a JWT (HS256, PyJWT)
with the client, lead, communication, channel and address, and an expiry counted from
the communication's creation, so every attempt of one communication carries exactly the
same headers (a provider's idempotency check compares the whole request).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import jwt

from lqs.errors import InputError

AUDIENCE = "lqs-unsubscribe"
MIN_SECRET_LENGTH = 32


class InvalidUnsubscribeToken(InputError, ValueError):
    """The token is malformed, forged or expired; the message says which."""


@dataclass(frozen=True)
class Unsubscribe:
    """Who a valid token unsubscribes."""

    client_id: UUID
    lead_id: UUID
    communication_id: UUID
    channel: str
    recipient: str
    expires_at: datetime


class UnsubscribeLinks:
    """Makes and reads unsubscribe tokens with one secret."""

    def __init__(self, secret: str, base_url: str, ttl: timedelta) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"the unsubscribe secret needs {MIN_SECRET_LENGTH}+ characters")
        self._secret = secret
        self.base_url = base_url.rstrip("/")
        self.ttl = ttl

    def token(
        self,
        *,
        client_id: UUID,
        lead_id: UUID,
        communication_id: UUID,
        channel: str,
        recipient: str,
        created_at: datetime,
    ) -> str:
        claims = {
            "aud": AUDIENCE,
            "c": str(client_id),
            "l": str(lead_id),
            "m": str(communication_id),
            "ch": channel,
            "r": recipient,
            "exp": int((created_at + self.ttl).timestamp()),
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def headers(self, token: str) -> Mapping[str, str]:
        """The RFC 8058 headers for an email carrying ``token``."""
        return {
            "List-Unsubscribe": f"<{self.base_url}/u/{token}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }

    def read(self, token: str, *, now: datetime | None = None) -> Unsubscribe:
        """The unsubscribe a token asks for.

        Raises:
            InvalidUnsubscribeToken: bad signature, malformed, or expired.
        """
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=AUDIENCE,
                options={"require": ["exp", "aud"], "verify_exp": now is None},
            )
            expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
            if now is not None and now >= expires:
                raise jwt.ExpiredSignatureError
            return Unsubscribe(
                client_id=UUID(claims["c"]),
                lead_id=UUID(claims["l"]),
                communication_id=UUID(claims["m"]),
                channel=str(claims["ch"]),
                recipient=str(claims["r"]),
                expires_at=expires,
            )
        except jwt.ExpiredSignatureError:
            raise InvalidUnsubscribeToken("this unsubscribe link has expired") from None
        except (jwt.InvalidTokenError, KeyError, ValueError, TypeError):
            raise InvalidUnsubscribeToken("this unsubscribe link is not valid") from None
