"""`iochub firmware import` and `advisories import` against a real database."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from firmware_meta import DEFAULT_ROOT
from firmware_meta.signing import load_private_key, sign_file
from hub.firmware.catalog import CatalogRefused, import_advisories, import_catalog
from tests.conftest import reset_database
from tests.integration.server.test_cli import iochub

S30 = Path("catalog/vnpt-technology/ip-speaker-s30")


@pytest.fixture
async def pool(database_url: str, db: asyncpg.Connection) -> AsyncIterator[asyncpg.Pool]:
    await reset_database(db)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    yield pool
    await pool.close()


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    root = tmp_path / "fw"
    for part in ("catalog", "artifacts", "keys"):
        shutil.copytree(DEFAULT_ROOT / part, root / part)
    return root


async def test_the_command_validates_and_imports_the_shipped_catalog_idempotently(
    database_url: str, db: asyncpg.Connection
) -> None:
    await reset_database(db)
    checked = iochub(database_url, "firmware", "validate")
    assert checked.returncode == 0, checked.stderr
    first = iochub(database_url, "firmware", "import")
    assert first.returncode == 0, first.stderr
    assert "24 added, 0 replaced, 0 unchanged" in first.stdout
    again = iochub(database_url, "firmware", "import")
    assert "0 added, 0 replaced, 24 unchanged" in again.stdout
    assert await db.fetchval("SELECT count(*) FROM firmware_release") == 24
    cves = await db.fetch(
        "SELECT r.version, v.cve, v.cvss::float8 AS cvss FROM firmware_vulnerability v "
        "JOIN firmware_release r ON r.id = v.release_id WHERE r.model = 'IP Speaker S30' "
        "ORDER BY r.released_on"
    )
    assert [(r["version"], r["cve"], r["cvss"]) for r in cves] == [
        ("2.2.7", "CVE-2024-900101", 9.8),
        ("2.3.1", "CVE-2024-900214", 7.5),
        ("2.4.0", "CVE-2025-900032", 5.3),
    ]
    advised = iochub(
        database_url,
        "firmware",
        "advisories",
        "import",
        str(DEFAULT_ROOT / "osv/demo-advisories.json"),
    )
    assert advised.returncode == 0, advised.stderr
    assert "6 attached, 0 already known" in advised.stdout
    again = iochub(
        database_url,
        "firmware",
        "advisories",
        "import",
        str(DEFAULT_ROOT / "osv/demo-advisories.json"),
    )
    assert "0 attached, 6 already known" in again.stdout


async def test_a_changed_manifest_is_refused_unless_forced(
    pool: asyncpg.Pool, catalog: Path
) -> None:
    await import_catalog(pool, catalog)
    path = catalog / S30 / "2.4.1.toml"
    path.write_text(path.read_text().replace("Stops logging", "No longer logs"))
    sign_file(
        path,
        load_private_key(DEFAULT_ROOT / "demo-signing-keys/vnpt-technology.pem"),
        "vnpt-technology",
    )
    with pytest.raises(CatalogRefused) as refused:
        await import_catalog(pool, catalog)
    assert [p.where for p in refused.value.problems] == [str(S30 / "2.4.1.toml")]
    assert "No longer" not in await pool.fetchval(
        "SELECT notes FROM firmware_release WHERE version = '2.4.1'"
    )
    forced = await import_catalog(pool, catalog, force=True)
    assert forced.updated == ["VNPT Technology IP Speaker S30 2.4.1"] and not forced.added
    assert "No longer" in await pool.fetchval(
        "SELECT notes FROM firmware_release WHERE version = '2.4.1'"
    )


async def test_a_broken_catalog_imports_nothing(pool: asyncpg.Pool, catalog: Path) -> None:
    artifact = catalog / "artifacts/vnpt-technology/ip-speaker-s30/ip-speaker-s30-2.10.0.bin"
    artifact.write_bytes(artifact.read_bytes()[:-1])
    with pytest.raises(CatalogRefused, match="2 problems") as refused:
        await import_catalog(pool, catalog)
    messages = [p.message for p in refused.value.problems]
    assert messages[0] == "artifact is 16383 bytes, the manifest says 16384"
    assert messages[1].startswith("artifact SHA-256 is ")
    assert await pool.fetchval("SELECT count(*) FROM firmware_release") == 0


async def test_advisories_keep_the_manifest_word_and_refuse_bad_files(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await import_catalog(pool)
    result = await import_advisories(pool, DEFAULT_ROOT / "osv/demo-advisories.json")
    assert "CVE-2025-900788 -> VNPT Technology IP Speaker S30 2.4.1" in result.attached
    sources = await pool.fetch("SELECT DISTINCT source FROM firmware_vulnerability ORDER BY source")
    assert [r["source"] for r in sources] == [
        "CVE-2025-900811",
        "IOCHUB-DEMO-2025-0007",
        "manifest",
    ]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CatalogRefused, match="cannot be read"):
        await import_advisories(pool, bad)
