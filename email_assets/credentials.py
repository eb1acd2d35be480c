"""Account secrets encrypted at rest with Fernet, sealed to the server they are for.

`EMAIL_ASSETS_FERNET_KEYS` holds comma-separated keys: the first encrypts, all decrypt
(MultiFernet), so a key is rotated by prepending a new one and running `keys rotate`.
A sealed secret is one Fernet token over the password, the OAuth2 token source and the
endpoint they may be used with (`seal`/`unseal`): whoever can write the accounts table
but has no key can neither point a password at another host nor plant a token command.
Nothing here ever puts a secret or a key into an exception message.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from email_assets.errors import ConfigurationError

KEYS_VARIABLE = "EMAIL_ASSETS_FERNET_KEYS"
_HOW_TO_FIX = "generate one with `email-assets keys generate`"
# Marks a sealed payload; a password is one line of stdin, so it can never start with it.
_SEALED = b"email-assets sealed secret v1\n"


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


@dataclass(frozen=True)
class Sealed:
    """What a sealed token holds: the secrets and the endpoint they belong to."""

    endpoint: dict[str, Any]
    password: str
    token_source: str | None


def _unreadable(account: str | None) -> ConfigurationError:
    whose = f"the stored secret of account {account!r}" if account else "a stored secret"
    return ConfigurationError(
        f"{whose} cannot be decrypted with any key in {KEYS_VARIABLE}: add the key it was written with"
    )


def _missing_keys(decrypting: bool, account: str | None) -> ConfigurationError:
    """No keys: on a new install make one; for stored secrets only their own key will do."""
    if decrypting:
        whose = f"account {account!r} has a stored secret" if account else "stored secrets exist"
        return ConfigurationError(
            f"{KEYS_VARIABLE} is not set: {whose}, set it to the key that encrypted it "
            "(a newly generated key cannot decrypt it)"
        )
    return ConfigurationError(
        f"{KEYS_VARIABLE} is not set: {_HOW_TO_FIX} (if accounts are already stored, set it to the key that "
        "encrypted them instead)"
    )


class SecretBox:
    """Encrypts and decrypts account secrets with the configured keys.

    Without keys it can still be made: the error then comes from the first use, where it
    can say whether a new key will do (encrypting) or only the old one (decrypting).
    """

    def __init__(self, keys: list[str]) -> None:
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode("ascii")))
            except (ValueError, UnicodeEncodeError):
                raise ConfigurationError(
                    f"{KEYS_VARIABLE} key #{position} is not a valid Fernet key: {_HOW_TO_FIX}"
                ) from None
        self._fernet = MultiFernet(fernets) if fernets else None

    @classmethod
    def from_environment(cls) -> SecretBox:
        return cls.from_keys_string(os.environ.get(KEYS_VARIABLE, ""))

    @classmethod
    def from_keys_string(cls, keys: str) -> SecretBox:
        return cls([key.strip() for key in keys.split(",") if key.strip()])

    def _keys(self, decrypting: bool = False, account: str | None = None) -> MultiFernet:
        if self._fernet is None:
            raise _missing_keys(decrypting, account)
        return self._fernet

    def encrypt(self, secret: str) -> bytes:
        return self._keys().encrypt(secret.encode("utf-8"))

    def decrypt(self, token: bytes, account: str | None = None) -> str:
        try:
            return self._keys(decrypting=True, account=account).decrypt(token).decode("utf-8")
        except InvalidToken:
            raise _unreadable(account) from None

    def rotate(self, token: bytes, account: str | None = None) -> bytes:
        """Re-encrypt with the first key (MultiFernet.rotate keeps the timestamp)."""
        try:
            return self._keys(decrypting=True, account=account).rotate(token)
        except InvalidToken:
            raise _unreadable(account) from None

    def seal(self, sealed: Sealed) -> bytes:
        payload = {"endpoint": sealed.endpoint, "password": sealed.password, "token_source": sealed.token_source}
        return self._keys().encrypt(_SEALED + json.dumps(payload, sort_keys=True).encode("utf-8"))

    def unseal(self, token: bytes, account: str) -> Sealed | None:
        """The sealed content, or None for a token from before sealing (a bare password)."""
        try:
            plain = self._keys(decrypting=True, account=account).decrypt(token)
        except InvalidToken:
            raise _unreadable(account) from None
        if not plain.startswith(_SEALED):
            return None
        payload = json.loads(plain[len(_SEALED) :])
        return Sealed(payload["endpoint"], payload["password"], payload["token_source"])
