"""Multicast WS-Discovery inside a private network namespace, on that namespace's loopback.

Multicast must never leave on a real interface in tests, so both the simulated
cameras and the probing hub run in a namespace of their own; the test needs root
to create it and is skipped, saying why, where that is not possible.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PROBE = """
import asyncio, json
from drivers.onvif.discovery import discover
report = asyncio.run(discover(allowed_subnets=["127.0.0.0/8"], interfaces=["127.0.0.1"], wait=1.0))
print(json.dumps({d.endpoint_ref: list(d.addresses) for d in report.found}))
"""


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)


@pytest.fixture
def namespace() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 ('ip') is not installed")
    name = f"iochub-onvif-{os.getpid()}"
    created = _run("ip", "netns", "add", name)
    if created.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {created.stderr.strip()}")
    try:
        for step in (
            ("ip", "link", "set", "lo", "up"),
            ("ip", "link", "set", "lo", "multicast", "on"),
            ("ip", "route", "add", "224.0.0.0/4", "dev", "lo"),
        ):
            done = _run("ip", "netns", "exec", name, *step)
            assert done.returncode == 0, done.stderr
        yield name
    finally:
        _run("ip", "netns", "del", name)


def test_multicast_probe_finds_the_cameras_in_the_namespace(namespace: str) -> None:
    cameras = subprocess.Popen(
        [
            *("ip", "netns", "exec", namespace),
            *(sys.executable, "-m", "drivers.onvif.simulator", "--cameras", "3", "--multicast"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert cameras.stdout is not None
        ready, _, _ = select.select([cameras.stdout], [], [], 15)
        assert ready, "the simulator did not start"
        fleet = json.loads(cameras.stdout.readline())

        probe = subprocess.run(
            ["ip", "netns", "exec", namespace, sys.executable, "-c", PROBE],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert probe.returncode == 0, probe.stderr
        found = json.loads(probe.stdout)
    finally:
        cameras.terminate()
        cameras.wait(10)

    assert set(found) == {camera["endpoint_ref"] for camera in fleet["cameras"]}
    for camera in fleet["cameras"]:
        assert found[camera["endpoint_ref"]] == [
            f"http://127.0.0.1:{camera['port']}/onvif/device_service"
        ]
