"""Secrets the product must read back (a webhook endpoint's signing secret), encrypted at rest.

Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) under the keys of ENCRYPTION_KEYS: the first
encrypts, every one decrypts (MultiFernet): a key is rotated by putting a new one first (new
secrets use it, old ones still open), re-encrypting the stored values (`rotate()`), then dropping the
old key. Without ENCRYPTION_KEYS the key is derived from SECRET_KEY (HKDF-SHA256), so a development
checkout works with nothing set; production sets keys of their own, so that a leaked SECRET_KEY alone
does not open the stored secrets (`check --deploy` warns otherwise, campaign.checks).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

__all__ = ["InvalidToken", "decrypt", "encrypt", "keyed_digest", "rotate"]


def _derived_key(secret_key: str) -> bytes:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"campaign.encryption").derive(
        secret_key.encode()
    )
    return base64.urlsafe_b64encode(derived)


def _fernet() -> MultiFernet:
    keys = [k.encode() for k in settings.ENCRYPTION_KEYS] or [_derived_key(settings.SECRET_KEY)]
    return MultiFernet([Fernet(k) for k in keys])


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    """The plain text; InvalidToken if no key of ENCRYPTION_KEYS (or SECRET_KEY's) opens it."""
    return _fernet().decrypt(token.encode()).decode()


def rotate(token: str) -> str:
    """The same secret encrypted under the first key."""
    return _fernet().rotate(token.encode()).decode()


def keyed_digest(data: bytes) -> str:
    """HMAC-SHA256 of `data` under a key derived from the first key of ENCRYPTION_KEYS (SECRET_KEY's
    without them): a digest of data holding a secret that cannot be reversed by trying guesses
    without the key (an event's sensitive values, events.typology)."""
    first = settings.ENCRYPTION_KEYS[0] if settings.ENCRYPTION_KEYS else settings.SECRET_KEY
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"campaign.keyed_digest").derive(
        first.encode()
    )
    return hmac.new(key, data, hashlib.sha256).hexdigest()
