"""Users' passwords: argon2id hashes (argon2-cffi), never the password itself."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from fleetctl.server.auth import new_secret

_hasher = PasswordHasher()
# Verified against when the user is unknown or has no password, so a refusal takes as
# long whether or not the name exists.
_DECOY = _hasher.hash(new_secret())
MIN_LENGTH = 12


def hash_password(password: str) -> str:
    if len(password) < MIN_LENGTH:
        raise ValueError(f"a password must have at least {MIN_LENGTH} characters")
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash`` (None or '': no password, never)."""
    try:
        return _hasher.verify(stored_hash or _DECOY, password) and bool(stored_hash)
    except (VerificationError, InvalidHashError):
        return False


def new_password() -> str:
    return new_secret(18)
