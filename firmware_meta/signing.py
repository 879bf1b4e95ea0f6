"""Ed25519 signatures (RFC 8032) over a manifest's canonical bytes.

The canonical bytes are a domain tag line followed by the manifest without its
``signature`` table as JSON: keys sorted, no insignificant whitespace, UTF-8, dates
as ISO 8601. They include the artifact's size and SHA-256, so a signature also vouches
for the image, and they do not depend on how the TOML was laid out or commented.

Vendor public keys live in keys/<key id>.pub (PEM, SubjectPublicKeyInfo); a manifest
names the key it was signed with, and that key must be its vendor's (the key id is the
vendor's slug), so one vendor's key cannot vouch for another vendor's firmware.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from firmware_meta.schema import Manifest, Signature

DOMAIN_TAG = b"iochub-firmware-manifest-v1\n"


class SignatureRefused(ValueError):
    """The manifest's signature is missing, malformed, from the wrong key, or does not verify."""


def slug(text: str) -> str:
    """``VNPT Technology`` -> ``vnpt-technology``; ``IP Speaker S30`` -> ``ip-speaker-s30``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def unsigned_document(manifest: Manifest | dict[str, Any]) -> dict[str, Any]:
    if isinstance(manifest, Manifest):
        document = manifest.model_dump(mode="json", exclude={"signature"})
    else:
        document = {k: v for k, v in manifest.items() if k != "signature"}
    return document


def canonical_bytes(manifest: Manifest | dict[str, Any]) -> bytes:
    body = json.dumps(
        unsigned_document(manifest), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return DOMAIN_TAG + body.encode()


def manifest_digest(manifest: Manifest) -> str:
    """SHA-256 of the canonical bytes: what "the same manifest" means on import."""
    return hashlib.sha256(canonical_bytes(manifest)).hexdigest()


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureRefused(f"{path.name} is not an Ed25519 public key")
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureRefused(f"{path.name} is not an Ed25519 private key")
    return key


def sign(manifest: Manifest | dict[str, Any], key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.sign(canonical_bytes(manifest))).decode()


def verify(manifest: Manifest, keys_dir: Path) -> None:
    """Raise SignatureRefused with the reason unless the vendor's key signed this manifest."""
    signature: Signature = manifest.signature
    expected_key = slug(manifest.vendor)
    if signature.key != expected_key:
        raise SignatureRefused(
            f"signed with key {signature.key!r}, but {manifest.vendor}'s key is {expected_key!r}"
        )
    key_path = keys_dir / f"{signature.key}.pub"
    if not key_path.is_file():
        raise SignatureRefused(f"no public key {signature.key!r} in {keys_dir}")
    try:
        raw = base64.b64decode(signature.ed25519, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureRefused("the signature is not base64") from None
    try:
        load_public_key(key_path).verify(raw, canonical_bytes(manifest))
    except InvalidSignature:
        raise SignatureRefused(
            f"the signature does not verify with key {signature.key!r}: the manifest "
            "changed after it was signed, or another key signed it"
        ) from None


def sign_file(path: Path, key: Ed25519PrivateKey, key_id: str) -> None:
    """(Re)sign a manifest file in place: its ``[signature]`` table, kept last, is rewritten."""
    import tomllib

    text = path.read_text(encoding="utf-8")
    head, _, _ = text.partition("\n[signature]")
    document = tomllib.loads(head)
    document["signature"] = {"key": key_id, "ed25519": "A" * 86 + "=="}
    manifest = Manifest.model_validate(document)
    value = sign(manifest, key)
    path.write_text(
        f'{head.rstrip()}\n\n[signature]\nkey = "{key_id}"\ned25519 = "{value}"\n',
        encoding="utf-8",
    )
