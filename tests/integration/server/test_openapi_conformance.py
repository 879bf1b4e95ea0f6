"""The OpenAPI document and the answers agree: errors are documented as problem+json with
their statuses, OPTIONS lists every method, and date-time parameters take only date-times."""

from __future__ import annotations

import pytest

from tests.conftest import Clients
from tests.integration.devices.test_registry_api import assert_problem


async def test_errors_are_documented_as_problems(clients: Clients) -> None:
    document = (await clients.viewer.get("/api/openapi.json")).json()
    assert "Problem" in document["components"]["schemas"]
    patch = document["paths"]["/api/v1/devices/{uid}"]["patch"]["responses"]
    for status in ("400", "401", "403", "404", "409", "422"):
        assert list(patch[status]["content"]) == ["application/problem+json"], status
    login = document["paths"]["/api/v1/auth/login"]["post"]
    assert login["security"] == [] and {"401", "429"} <= login["responses"].keys()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert list(answer.get("content", {})) == ["application/problem+json"], (
                        method,
                        path,
                        status,
                    )
    # What the document promises is what a refusal looks like.
    answer = await clients.viewer.patch("/api/v1/devices/nope", json={"name": "x"})
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert str(answer.status_code) in patch


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/api/v1/devices", {"GET", "POST", "OPTIONS"}),
        ("/api/v1/devices/x", {"GET", "PATCH", "DELETE", "OPTIONS"}),
        ("/api/v1/alert-rules", {"GET", "POST", "OPTIONS"}),
    ],
)
async def test_options_lists_every_method_of_a_path(
    clients: Clients, path: str, allowed: set[str]
) -> None:
    answer = await clients.viewer.options(path)
    assert answer.status_code == 204
    assert {m.strip() for m in answer.headers["allow"].split(",")} == allowed


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/v1/broadcasts/calendar", "start"),
        ("/api/v1/broadcasts/calendar", "end"),
        ("/api/v1/telemetry/export.csv", "end"),
        ("/api/v1/telemetry/series?device=x&metric=pm2_5", "start"),
    ],
)
@pytest.mark.parametrize("value", ["0.5", "1700000000", "tomorrow", "2026-13"])
async def test_date_time_parameters_refuse_what_is_not_a_date_time(
    clients: Clients, path: str, name: str, value: str
) -> None:
    answer = await clients.admin.get(path, params={name: value})
    problem = assert_problem(answer, 400)
    assert problem["errors"][0]["field"] == name and problem["errors"][0]["source"] == "query"


async def test_date_time_parameters_take_date_times(clients: Clients) -> None:
    for value in ("2026-12-07T08:00:00+07:00", "2026-12-07T01:00:00Z", "2026-12-07T08:00:00"):
        answer = await clients.admin.get("/api/v1/broadcasts/calendar", params={"start": value})
        assert answer.status_code == 200, (value, answer.text)


async def test_patch_routes_are_documented_as_merge_patches(clients: Clients) -> None:
    document = (await clients.viewer.get("/api/openapi.json")).json()
    schemas = document["components"]["schemas"]
    patches = [(path, item["patch"]) for path, item in document["paths"].items() if "patch" in item]
    assert {p for p, _ in patches} >= {
        "/api/v1/alert-rules/{rule_id}",
        "/api/v1/devices/{uid}",
        "/api/v1/webhooks/{subscription_id}",
    }
    for path, operation in patches:
        content = operation["requestBody"]["content"]
        assert list(content) == ["application/merge-patch+json"], path
        schema = content["application/merge-patch+json"]["schema"]
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema
        assert not schema.get("required"), (path, schema.get("required"))
