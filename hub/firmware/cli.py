"""`iochub firmware ...`: check, import and sign the catalog; run rollouts.

The composition root adds this app to the `iochub` command with `make_app()`, handing
it where the database is, so this slice never reads the hub's settings itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from firmware_meta import DEFAULT_ROOT, check_catalog, json_schema
from firmware_meta.signing import load_private_key, sign_file
from hub.errors import HubError
from hub.firmware.settings import FirmwareSettings

T = TypeVar("T")
console = Console()
err = Console(stderr=True)

CatalogOption = Annotated[
    Path, typer.Option("--catalog", help="catalog folder (catalog/, artifacts/, keys/)")
]


def _fail(exc: HubError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc.detail}")
    for problem in exc.errors[:200]:
        where = f"row {problem.row} " if problem.row is not None else ""
        err.print(f"  {where}{problem.field}: {problem.message}", highlight=False)
    return typer.Exit(1)


def make_app(
    database_url: Callable[[], str],
    settings: Callable[[], FirmwareSettings] = FirmwareSettings,
) -> typer.Typer:
    app = typer.Typer(help="The firmware catalog, compliance and rollouts.", no_args_is_help=True)
    advisories_app = typer.Typer(help="Vulnerability advisories (OSV JSON).", no_args_is_help=True)
    app.add_typer(advisories_app, name="advisories")

    def with_pool(work: Callable[[Any], Awaitable[T]]) -> T:
        from hub.storage import database

        async def main() -> T:
            db = await database.connect(database_url(), min_size=1, max_size=4, orm=False)
            try:
                return await work(db.pool)
            finally:
                await db.close()

        try:
            return asyncio.run(main())
        except HubError as exc:
            raise _fail(exc) from None

    @app.command("validate")
    def validate(catalog: CatalogOption = DEFAULT_ROOT) -> None:
        """Check every manifest: schema, duplicates, upgrade paths, signatures, artifacts."""
        report = check_catalog(catalog)
        for problem in report.problems:
            err.print(str(problem), highlight=False, soft_wrap=True)
        if not report.ok:
            err.print(f"[bold red]{len(report.problems)} problems[/] in {catalog}")
            raise typer.Exit(1)
        models = report.by_model()
        console.print(
            f"catalog ok: {len(report.releases)} releases of {len(models)} models, "
            "signatures and artifacts verified"
        )

    @app.command("import")
    def import_(
        catalog: CatalogOption = DEFAULT_ROOT,
        force: Annotated[
            bool, typer.Option(help="replace manifests that changed for an imported version")
        ] = False,
    ) -> None:
        """Load the catalog into the database (idempotent; changed manifests refused)."""
        from hub.firmware.catalog import import_catalog

        result = with_pool(lambda pool: import_catalog(pool, catalog, force=force))
        for label in result.added:
            console.print(f"added {label}", highlight=False)
        for label in result.updated:
            console.print(f"replaced {label}", highlight=False)
        console.print(
            f"{len(result.added)} added, {len(result.updated)} replaced, "
            f"{len(result.unchanged)} unchanged"
        )

    @advisories_app.command("import")
    def advisories_import(
        file: Annotated[Path, typer.Argument(help="OSV JSON: one record, a list, or {vulns}")],
    ) -> None:
        """Attach the CVEs of OSV advisories to the catalog versions they affect."""
        from hub.firmware.catalog import import_advisories

        result = with_pool(lambda pool: import_advisories(pool, file))
        for line in result.attached:
            console.print(f"attached {line}", highlight=False)
        for source in result.unmatched:
            console.print(f"{source}: affects no imported release", highlight=False)
        console.print(f"{len(result.attached)} attached, {result.unchanged} already known")

    @app.command("schema")
    def schema(
        check: Annotated[
            bool, typer.Option(help="fail if the published schema file is out of date")
        ] = False,
    ) -> None:
        """Write firmware_meta/manifest.schema.json from the manifest model."""
        text = json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
        target = DEFAULT_ROOT / "manifest.schema.json"
        if check:
            if target.read_text(encoding="utf-8") != text:
                err.print(f"{target} is out of date: run `iochub firmware schema`")
                raise typer.Exit(1)
            console.print(f"{target.name} is current")
            return
        target.write_text(text, encoding="utf-8")
        console.print(f"wrote {target}")

    from hub.firmware.rollout_cli import add_rollout_commands

    add_rollout_commands(app, with_pool, settings)

    @app.command("sign")
    def sign(
        manifests: Annotated[list[Path], typer.Argument(help="manifest files to (re)sign")],
        key: Annotated[Path, typer.Option(help="Ed25519 private key (PEM, PKCS#8)")],
        key_id: Annotated[str, typer.Option(help="key id: the vendor's slug")],
    ) -> None:
        """Sign manifests with a vendor key (the demo keys are in demo-signing-keys/)."""
        private = load_private_key(key)
        for path in manifests:
            sign_file(path, private, key_id)
            console.print(f"signed {path}")

    return app
