"""argon2id for every stored password (console members, protected links)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# Link passwords guard a redirect, not an account: lighter parameters keep bulk imports and the
# unlock page quick while still being a memory-hard hash.
_link_hasher = PasswordHasher(time_cost=2, memory_cost=16 * 1024, parallelism=1)
# Members: OWASP's argon2id configuration (19 MiB, 2 passes, 1 lane): ~0.1 s per sign-in on a
# busy 2-core machine, where the library default (64 MiB, 3 passes, 4 lanes) took ~0.8 s —
# a CPU cost an attacker could make us pay per request (decision 0021).
_member_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified against when the account does not exist, so both answers take as long.
_DUMMY = _member_hasher.hash("liebian-no-such-account")


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


def verify_nothing(password: str) -> None:
    """Spend a password check's time on an unknown account (no answer-time tell)."""
    verify_password(_DUMMY, password)
