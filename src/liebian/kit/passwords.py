"""argon2id for every stored password (console members, protected links)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# Link passwords guard a redirect, not an account: lighter parameters keep bulk imports and the
# unlock page quick while still being a memory-hard hash.
_link_hasher = PasswordHasher(time_cost=2, memory_cost=16 * 1024, parallelism=1)
_member_hasher = PasswordHasher()


def hash_link_password(password: str) -> str:
    return _link_hasher.hash(password)


def hash_member_password(password: str) -> str:
    return _member_hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        # Parameters are read from the hash itself, so either hasher verifies either kind.
        return _member_hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False
