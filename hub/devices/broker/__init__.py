"""Broker-side device identity: per-device MQTT credentials and topic ACLs.

The hub sees only ``BrokerAccess``. At start the composition root picks
``DatabaseIdentities`` when the broker reads identities from the database
(IOCHUB_MQTT__IDENTITIES=database, EMQX), ``MosquittoDynsec`` when broker admin
credentials are configured, else
``NoBrokerAccess`` with the reason, then calls ``ensure_base_roles()`` and
``ensure_hub_client()``.
"""

from .access import (
    DEVICE_PERMISSIONS,
    DEVICE_UID_PATTERN,
    BrokerAccess,
    BrokerAccessError,
    BrokerDevice,
    DeviceNotProvisioned,
    DevicePermissions,
    NoBrokerAccess,
    checked_device_uid,
)
from .credentials import hash_device_secret, new_device_secret, verify_device_secret
from .database_views import DatabaseIdentities
from .mosquitto_dynsec import MosquittoDynsec

__all__ = [
    "DEVICE_PERMISSIONS",
    "DEVICE_UID_PATTERN",
    "BrokerAccess",
    "BrokerAccessError",
    "BrokerDevice",
    "DatabaseIdentities",
    "DeviceNotProvisioned",
    "DevicePermissions",
    "MosquittoDynsec",
    "NoBrokerAccess",
    "checked_device_uid",
    "hash_device_secret",
    "new_device_secret",
    "verify_device_secret",
]
