"""Schemathesis fuzzes every operation of the OpenAPI document as each role: every answer
conforms to the document (no server error among them), and ward staff may never see another
ward's objects."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import WARDS, Clients
from tests.support.hub import RunningHub

# Conformance, not only "no 5xx": every answer (status, media type, headers, body) is the
# one the OpenAPI document promises, and data the document calls invalid is refused. Left
# out: positive_data_acceptance (valid by schema is not valid by the hub's rules: an unknown
# ward is refused) and the stateful checks (the examples phase creates no chains).
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "ignored_auth",
    "no_foreign_ward_data",
]
# Operations that reach out of the hub (camera probes, webhook deliveries) are left out:
# fuzzed addresses would send traffic off this machine. The callers' own tokens are not
# fuzzed away either (the admin could revoke every token of every user).
EXCLUDED_PATHS = (
    r"^/api/v1/(webhooks|cameras)|^/api/v1/auth/(logout|tokens/)|^/api/v1/users/[^/]+/tokens"
)


@pytest.mark.parametrize("role", ["admin", "technician", "staff_a", "viewer"])
async def test_fuzzing_finds_no_server_error_and_no_ward_leak(
    hub: RunningHub, clients: Clients, tokens: dict[str, str], role: str, tmp_path: Path
) -> None:
    schemathesis = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    if not Path(schemathesis).exists():
        pytest.skip("schemathesis is not installed (it is a dev dependency)")
    await clients.admin.post(
        "/api/v1/devices", json={"uid": "fz-a", "kind": "sensor", "ward": "ward-a"}
    )
    await clients.admin.post(
        "/api/v1/devices", json={"uid": "fz-b", "kind": "speaker", "ward": "ward-b"}
    )
    foreign = [code for code, _ in WARDS if code != "ward-a"] if role == "staff_a" else []
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.integration.server.fuzz_hooks",
        "IOCHUB_FUZZ_FOREIGN_WARDS": ",".join(foreign),
    }
    process = await asyncio.create_subprocess_exec(
        schemathesis,
        "run",
        f"{hub.base_url}/api/openapi.json",
        "--header",
        f"Authorization: Bearer {tokens[role]}",
        "--checks",
        ",".join(CHECKS),
        "--exclude-path-regex",
        EXCLUDED_PATHS,
        "--phases",
        "examples,fuzzing",
        "--max-examples",
        "6",
        "--generation-deterministic",
        "--request-timeout",
        "20",
        "--report",
        "junit",
        "--report-junit-path",
        str(tmp_path / "report.xml"),
        "--no-color",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 600)
    text = output.decode(errors="replace")
    (tmp_path / "schemathesis.txt").write_text(text)
    assert process.returncode == 0, text[-6000:]
