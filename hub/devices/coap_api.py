"""Routes for sensors' OSCORE keys under /api/v1/devices/{uid}/coap-credentials."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import CacheControlHeader

from hub.auth import CurrentUser, Principal
from hub.devices.api import UidParam
from hub.devices.coap_keys import COAP_KEYS, CoapCredentialsOut, CoapKeyring
from hub.runtime import runtime_of


class CoapCredentialController(Controller):
    path = "/api/v1"
    tags = ["devices"]

    @post(
        "/devices/{uid:str}/coap-credentials",
        status_code=201,
        cache_control=CacheControlHeader(no_store=True),
    )
    async def issue_coap_credentials(
        self, request: Request[Principal, Any, Any], principal: CurrentUser, uid: UidParam
    ) -> CoapCredentialsOut:
        """Issue (or rotate) the sensor's OSCORE key for CoAP; the master secret and salt are
        in this answer only. Give the device all of it: it sends `sender_id` as its key id.

        Rotation takes effect at once: requests under the previous key are answered 4.01."""
        return await keyring_of(request).issue(principal, uid)

    @get("/devices/{uid:str}/coap-credentials")
    async def coap_credential_status(
        self, request: Request[Principal, Any, Any], principal: CurrentUser, uid: UidParam
    ) -> CoapCredentialsOut:
        """The sensor's OSCORE key ids, algorithms and state (never the secret)."""
        return await keyring_of(request).status(principal, uid)

    @delete("/devices/{uid:str}/coap-credentials", status_code=200)
    async def revoke_coap_credentials(
        self, request: Request[Principal, Any, Any], principal: CurrentUser, uid: UidParam
    ) -> CoapCredentialsOut:
        """Revoke the sensor's OSCORE key: its next CoAP request is answered 4.01."""
        return await keyring_of(request).revoke(principal, uid)


def keyring_of(request: Request[Any, Any, Any]) -> CoapKeyring:
    return runtime_of(request).get(COAP_KEYS)
