"""Images are served as the bytes that were checked, and a file changed on disk after its
check is refused, not served."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from firmware_meta import DEFAULT_ROOT, check_catalog
from hub.errors import Conflict
from hub.firmware.artifacts import ArtifactStore
from hub.firmware.catalog import _values
from hub.firmware.store import ReleaseRow


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "fw"
    for part in ("catalog", "artifacts", "keys"):
        shutil.copytree(DEFAULT_ROOT / part, root / part)
    return root


def s30(root: Path) -> ReleaseRow:
    [found] = [
        r for r in check_catalog(root).releases
        if r.manifest.model == "IP Speaker S30" and r.manifest.version == "2.10.0"
    ]  # fmt: skip
    values = _values(found)
    values.pop("source")
    return ReleaseRow(id=7, **values)


def test_the_checked_bytes_are_served_and_a_changed_file_is_refused(root: Path) -> None:
    release = s30(root)
    store = ArtifactStore(root)
    image = store.image(release)
    assert isinstance(image, bytes)
    assert hashlib.sha256(image).hexdigest() == release.artifact_sha256
    assert store.image(release) is image  # held: no read per download
    path = store.path(release)
    tampered = bytearray(path.read_bytes())
    tampered[0] ^= 0xFF
    path.write_bytes(bytes(tampered))  # same size, other bytes
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(Conflict, match="does not match its manifest"):
        store.image(release)
