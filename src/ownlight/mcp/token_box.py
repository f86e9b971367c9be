"""Sealing users' upstream OAuth tokens before they reach the store: AES-256-GCM under a
key from ``[mcp] token_key`` (a secret reference, which instances sharing a store must all
be given) or, when that is unset, a key file made 0600 in the data dir on first use.

A sealed value is bound to its (server, principal) row as associated data, so a row copied
onto another user's does not open."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ownlight.config.secrets import Secret
from ownlight.errors import ConfigError
from ownlight.store.files import PRIVATE_FILE, make_private_dir

KEY_FILE = "mcp-token.key"
NONCE_BYTES = 12


def load_key(setting: Secret | None, data_dir: Path) -> bytes:
    """The 32-byte key: the setting's (base64), else the data dir's key file, made once."""
    if setting is not None:
        try:
            key = base64.b64decode(setting.reveal().strip(), validate=True)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ConfigError("[mcp] token_key must be 32 bytes in base64 "
                              "(e.g. `openssl rand -base64 32`)")
        return key
    path = data_dir / KEY_FILE
    make_private_dir(data_dir)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        key = base64.b64decode(path.read_text().strip())
        if len(key) != 32:
            raise ConfigError(f"{path} does not hold a 32-byte key in base64") from None
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as out:
        out.write(base64.b64encode(key).decode() + "\n")
    return key


class TokenBox:
    """``seal(server, principal, {...})`` → text for the store; ``open`` reverses it (None
    when the key or the row does not match: treated as no token)."""

    def __init__(self, key: bytes):
        self._aead = AESGCM(key)

    def seal(self, server: str, principal: str, value: dict[str, Any]) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        box = self._aead.encrypt(nonce, orjson.dumps(value), _bound(server, principal))
        return base64.urlsafe_b64encode(nonce + box).decode()

    def open(self, server: str, principal: str, sealed: str) -> dict[str, Any] | None:
        try:
            raw = base64.urlsafe_b64decode(sealed)
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:],
                                       _bound(server, principal))
            value = orjson.loads(plain)
        except Exception:  # noqa: BLE001 - a wrong key or a tampered row: no token
            return None
        return value if isinstance(value, dict) else None


def _bound(server: str, principal: str) -> bytes:
    return orjson.dumps([server, principal])
