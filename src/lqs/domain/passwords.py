"""Users' passwords: argon2id hashes, checks, and generated passwords.

A password is kept only as an argon2id hash (argon2-cffi's defaults, RFC 9106's second
recommended profile: 64 MiB, 3 passes, 4 lanes), in PHC form (``$argon2id$v=19$...``), so
the parameters travel with the hash: :func:`needs_rehash` says when a stored hash was
made with weaker ones than today's, and sign-in replaces it with a fresh one.
"""

from __future__ import annotations

import secrets
import string
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from lqs.errors import InputError

MIN_LENGTH = 12
"""The shortest password accepted (NIST SP 800-63B asks for 8; LQS's users are admins)."""
MAX_LENGTH = 1024
"""The longest: argon2 reads any length, but a megabyte "password" is a denial of service."""
GENERATED_LENGTH = 20
_ALPHABET = string.ascii_letters + string.digits
_HASHER = PasswordHasher()


class WeakPassword(InputError, ValueError):
    """Raised when a password is shorter than :data:`MIN_LENGTH` or longer than
    :data:`MAX_LENGTH`; the message says which."""


def password_problem(password: str) -> str | None:
    """Why ``password`` cannot be used, or None."""
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters (this one has {len(password)})"
    if len(password) > MAX_LENGTH:
        return f"a password may have at most {MAX_LENGTH} characters"
    return None


def hash_password(password: str) -> str:
    """The argon2id hash of ``password``, in PHC form.

    Raises:
        WeakPassword: too short or too long (:func:`password_problem`).
    """
    problem = password_problem(password)
    if problem is not None:
        raise WeakPassword(problem)
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash``; False for a malformed hash too.
    Takes the hash's full time whatever the answer."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Whether ``stored_hash`` was made with other parameters than :func:`hash_password`
    uses today (then hash the password again after a successful sign-in)."""
    try:
        return _HASHER.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


def generate_password(length: int = GENERATED_LENGTH) -> str:
    """A random password of letters and digits (``secrets``): 20 of them carry 119 bits."""
    if length < MIN_LENGTH:
        raise WeakPassword(f"a generated password needs at least {MIN_LENGTH} characters")
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


@cache
def dummy_hash() -> str:
    """A hash no password is known for (made once, on first use): sign-in verifies against
    it when the email is unknown, so an unknown address takes as long to refuse as a
    wrong password."""
    return _HASHER.hash(generate_password())
