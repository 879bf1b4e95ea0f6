"""Device secrets: random enough, and stored by the hub only as salted hashes."""

from __future__ import annotations

import base64
import string

from hub.devices.broker import hash_device_secret, new_device_secret, verify_device_secret

URL_SAFE = set(string.ascii_letters + string.digits + "-_")


def test_secrets_carry_at_least_128_random_bits_and_never_repeat() -> None:
    made = {new_device_secret() for _ in range(200)}
    assert len(made) == 200
    for secret in made:
        assert len(base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))) * 8 >= 128
        assert set(secret) <= URL_SAFE


def test_a_hash_verifies_its_secret_only() -> None:
    secret = new_device_secret()
    stored = hash_device_secret(secret)
    assert stored.startswith("sha256$") and secret not in stored
    assert secret not in stored
    assert verify_device_secret(secret, stored)
    assert not verify_device_secret(new_device_secret(), stored)
    assert not verify_device_secret(secret, "not a hash")
    assert hash_device_secret(secret) != stored  # salted
