"""Account secrets encrypted at rest with Fernet.

`EMAIL_ASSETS_FERNET_KEYS` holds comma-separated keys: the first encrypts, all decrypt
(MultiFernet), so a key is rotated by prepending a new one and running `keys rotate`.
Nothing here ever puts a secret or a key into an exception message.
"""

from __future__ import annotations

import os

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from email_assets.errors import ConfigurationError

KEYS_VARIABLE = "EMAIL_ASSETS_FERNET_KEYS"
_HOW_TO_FIX = "generate one with `email-assets keys generate`"


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


class SecretBox:
    """Encrypts and decrypts account secrets with the configured keys."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ConfigurationError(f"{KEYS_VARIABLE} is not set: {_HOW_TO_FIX}")
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode("ascii")))
            except (ValueError, UnicodeEncodeError):
                raise ConfigurationError(
                    f"{KEYS_VARIABLE} key #{position} is not a valid Fernet key: {_HOW_TO_FIX}"
                ) from None
        self._fernet = MultiFernet(fernets)

    @classmethod
    def from_environment(cls) -> SecretBox:
        return cls.from_keys_string(os.environ.get(KEYS_VARIABLE, ""))

    @classmethod
    def from_keys_string(cls, keys: str) -> SecretBox:
        return cls([key.strip() for key in keys.split(",") if key.strip()])

    def encrypt(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode("utf-8"))

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode("utf-8")
        except InvalidToken:
            raise ConfigurationError(
                f"a stored secret cannot be decrypted with any key in {KEYS_VARIABLE}: add the key it was written with"
            ) from None

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt with the first key (MultiFernet.rotate keeps the timestamp)."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken:
            raise ConfigurationError(
                f"a stored secret cannot be decrypted with any key in {KEYS_VARIABLE}: add the key it was written with"
            ) from None
