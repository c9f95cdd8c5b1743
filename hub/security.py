"""Password and secret hashing shared by every part of the hub that stores a credential.

scrypt (stdlib) with a per-hash salt; verification runs off the event loop and in constant time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets

# n=2**14, r=8: about 16 MiB and tens of milliseconds a hash: too slow to brute-force a stolen
# database, fast enough that a few chargers reconnecting at once do not queue for long.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_PREFIX = "scrypt"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str, *, n: int = SCRYPT_N) -> str:
    """`scrypt$n$r$p$salt$hash`: everything needed to verify, nothing to recover the password."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 1024 * 1024
    )
    return f"{_PREFIX}${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        prefix, n, r, p, salt, digest = stored.split("$")
        if prefix != _PREFIX:
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=64 * 1024 * 1024,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


async def async_hash_password(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(None, hash_password, password)


async def async_verify_password(password: str, stored: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(None, verify_password, password, stored)


def is_password_hash(value: str) -> bool:
    return value.startswith(_PREFIX + "$") and value.count("$") == 5
