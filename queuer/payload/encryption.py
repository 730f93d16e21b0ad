"""Client-side encryption of job arguments and results (AES-256-GCM).

Blob format (bytea): ``version (1 byte, 1) | key id (4 bytes) | nonce (12 bytes) | ciphertext + tag``.
The associated data binds a blob to one job and one field
(``queuer/v1/<rid>/<field>``), so a ciphertext moved to another job or field
fails to decrypt instead of being accepted.

Keys: ``QUEUER_ENCRYPTION_KEY`` holds one or more keys separated by commas,
newest first. The newest encrypts; every key decrypts (rotation). A key is 32
random bytes in base64 (``queuer keygen``) or a passphrase of at least 16
characters, stretched with HKDF-SHA256.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from queuer.errors import EncryptionError

VERSION = 1
HEADER = 1 + 4 + 12


@dataclass(frozen=True)
class _Key:
    key_id: bytes
    aead: AESGCM = field(repr=False)


def generate_key() -> str:
    """A new random key, in the form QUEUER_ENCRYPTION_KEY takes."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def _key_bytes(text: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        if len(raw) == 32:
            return raw
    except (binascii.Error, ValueError):
        pass
    if len(text) < 16:
        raise EncryptionError("an encryption key must be 32 bytes in base64 (queuer keygen) "
                              "or a passphrase of at least 16 characters")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"queuer", info=b"aes-256-gcm").derive(text.encode())


class Keyring:
    """The configured keys; ``repr`` shows key ids only."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise EncryptionError("no encryption key given")
        self._keys = []
        for text in keys:
            raw = _key_bytes(text.strip())
            self._keys.append(_Key(hashlib.sha256(raw).digest()[:4], AESGCM(raw)))
        self._by_id = {k.key_id: k for k in reversed(self._keys)}

    @classmethod
    def parse(cls, value: str | None) -> Keyring | None:
        if not value:
            return None
        return cls([part for part in value.split(",") if part.strip()])

    @property
    def current_id(self) -> bytes:
        return self._keys[0].key_id

    def __repr__(self) -> str:
        return f"<Keyring keys={[k.key_id.hex() for k in self._keys]}>"

    @staticmethod
    def _aad(binding: UUID, what: str) -> bytes:
        return f"queuer/v{VERSION}/{binding}/{what}".encode()

    def encrypt(self, plaintext: bytes, binding: UUID, what: str) -> bytes:
        key = self._keys[0]
        nonce = os.urandom(12)
        return bytes([VERSION]) + key.key_id + nonce + key.aead.encrypt(nonce, plaintext, self._aad(binding, what))

    def decrypt(self, blob: bytes, binding: UUID, what: str) -> bytes:
        blob = bytes(blob)
        if len(blob) < HEADER + 16 or blob[0] != VERSION:
            raise EncryptionError(f"the job's {what} are not in queuer's encrypted format")
        key = self._by_id.get(blob[1:5])
        if key is None:
            raise EncryptionError(
                f"the job's {what} were encrypted with key {blob[1:5].hex()}, which is not configured here "
                f"(configured: {', '.join(k.key_id.hex() for k in self._keys)}); add it to QUEUER_ENCRYPTION_KEY"
            )
        try:
            return key.aead.decrypt(blob[5:17], blob[17:], self._aad(binding, what))
        except InvalidTag:
            raise EncryptionError(
                f"the job's {what} failed authentication: altered, or moved from another job"
            ) from None

    # What a job's payloads are, sealed: its arguments (bound to the first job of a
    # series, so recurring runs and re-adds open them) and its result (bound to itself).

    def seal_arguments(self, parameters_json: str, keyed_json: str, binding: UUID) -> bytes:
        return self.encrypt(('{"p":' + parameters_json + ',"k":' + keyed_json + "}").encode(), binding, "arguments")

    def open_arguments(self, blob: bytes, binding: UUID) -> tuple[Any, Any]:
        """(parameters, parameters_keyed); EncryptionError when they cannot be opened here."""
        opened = _json_object(self.decrypt(blob, binding, "arguments"), "arguments")
        return opened.get("p"), opened.get("k")

    def seal_results(self, results_json: str, rid: UUID) -> bytes:
        return self.encrypt(results_json.encode(), rid, "results")

    def open_results(self, blob: bytes, rid: UUID) -> Any:
        try:
            return json.loads(self.decrypt(blob, rid, "results"))
        except ValueError:
            raise EncryptionError("the job's results opened but are not JSON") from None

    def needs_rotation(self, blob: bytes | None) -> bool:
        return blob is not None and bytes(blob[1:5]) != self.current_id


def _json_object(plain: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(plain)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise EncryptionError(f"the job's {what} opened but are not a JSON object")
    return value
