"""Sealing of key values the daemon keeps in its own state (the bootstrap's resume point).

The snapshotter resumes a bootstrap after the last key it copied, so its state holds that key as
the source has it; under column policies a key column may be hashed for every consumer while its
raw values are personal data. With a hash key configured, the state's keys are sealed: encrypted
and authenticated with keys derived from the HMAC key (HMAC-SHA256 as the pseudo-random function
of a counter-mode keystream, then HMAC-SHA256 over nonce and ciphertext; standard library only).
Nothing but the daemon (and commands given the same key) can read them back.
"""

from __future__ import annotations

import base64
import hmac
import os

from cdc.core.errors import ConfigError

__all__ = ["StateKeySeal"]

_NONCE = 16
_TAG = 16


class StateKeySeal:
    def __init__(self, key: bytes, key_env: str) -> None:
        self._enc = hmac.digest(key, b"headwater state seal: encryption", "sha256")
        self._mac = hmac.digest(key, b"headwater state seal: authentication", "sha256")
        self._key_env = key_env

    def _stream(self, nonce: bytes, size: int) -> bytes:
        blocks = (size + 31) // 32
        return b"".join(
            hmac.digest(self._enc, nonce + i.to_bytes(8, "big"), "sha256") for i in range(blocks)
        )[:size]

    def seal(self, data: bytes) -> str:
        nonce = os.urandom(_NONCE)
        body = bytes(a ^ b for a, b in zip(data, self._stream(nonce, len(data)), strict=True))
        tag = hmac.digest(self._mac, nonce + body, "sha256")[:_TAG]
        return base64.b64encode(nonce + body + tag).decode()

    def open(self, token: str) -> bytes:
        raw = base64.b64decode(token)
        nonce, body, tag = raw[:_NONCE], raw[_NONCE:-_TAG], raw[-_TAG:]
        if len(raw) < _NONCE + _TAG or not hmac.compare_digest(
            tag, hmac.digest(self._mac, nonce + body, "sha256")[:_TAG]
        ):
            raise ConfigError(
                f"the snapshot state holds a key sealed with another HMAC key than the one in "
                f"{self._key_env}: set {self._key_env} back to the key the bootstrap started with, or "
                "bootstrap the table afresh (cdc bootstrap)"
            )
        return bytes(a ^ b for a, b in zip(body, self._stream(nonce, len(body)), strict=True))
