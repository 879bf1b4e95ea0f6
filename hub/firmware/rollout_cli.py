"""`iochub firmware rollout ...`: create and steer campaigns, with live progress."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from hub.auth import Principal, Role
from hub.errors import NotFound
from hub.firmware import store
from hub.firmware.campaigns import Campaigns
from hub.firmware.schemas import CampaignIn
from hub.firmware.settings import FirmwareSettings
from hub.firmware.store import CampaignRow

T = TypeVar("T")
console = Console()
CLI = Principal(user_id=0, username="cli", role=Role.ADMIN, ward_ids=None, via="token")
FINAL = ("completed", "stopped", "cancelled")
SHOWN = (
    "pending",
    "sent",
    "downloading",
    "verifying",
    "installing",
    "rebooting",
    "updated",
    "failed",
    "refused",
    "cancelled",
)

WithPool = Callable[[Callable[[Any], Awaitable[T]]], T]
IdArgument = Annotated[int, typer.Argument(help="campaign id")]


async def snapshot(
    pool: Any, campaign_id: int
) -> tuple[CampaignRow, list[Any], dict[int, dict[str, int]]]:
    async with pool.acquire() as conn:
        campaign = await store.campaign(conn, campaign_id)
        if campaign is None:
            raise NotFound(f"no campaign {campaign_id}")
        return (
            campaign,
            await store.waves(conn, campaign_id),
            await store.wave_counts(conn, campaign_id),
        )


def render(campaign: CampaignRow, waves: list[Any], counts: dict[int, dict[str, int]]) -> Group:
    table = Table(
        "wave",
        "state",
        "size",
        *SHOWN,
        title=(
            f"campaign {campaign.id} «{campaign.name}»: {campaign.vendor} {campaign.model} → "
            f"{campaign.version} ({campaign.state})"
        ),
    )
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
    )
    for wave in waves:
        here = counts.get(wave["wave"], {})
        table.add_row(
            str(wave["wave"] + 1),
            wave["state"],
            str(wave["size"]),
            *(str(here.get(s, 0) or "") for s in SHOWN),
        )
        done = here.get("updated", 0)
        failed = here.get("failed", 0)
        bars.add_task(
            f"wave {wave['wave'] + 1}",
            total=max(wave["size"], 1),
            completed=done,
            note=f"{failed} failed" if failed else "",
        )
    parts: list[Any] = [table, bars]
    if campaign.stop_reason:
        parts.append(f"[bold red]stopped:[/] {campaign.stop_reason}")
    return Group(*parts)


def add_rollout_commands(
    app: typer.Typer, with_pool: WithPool[Any], settings: Callable[[], FirmwareSettings]
) -> None:
    rollout = typer.Typer(help="Staged firmware rollouts (campaigns).", no_args_is_help=True)
    app.add_typer(rollout, name="rollout")

    def campaigns(pool: Any) -> Campaigns:
        return Campaigns(pool, settings())

    @rollout.command("create")
    def create(
        name: Annotated[str, typer.Option(help="what to call the campaign")],
        release: Annotated[
            int, typer.Option(help="target release id (GET /api/v1/firmware/catalog)")
        ],
        ward: Annotated[list[str], typer.Option(help="ward code; repeat for several")] = [],  # noqa: B006
        group: Annotated[int | None, typer.Option(help="device group id")] = None,
        device: Annotated[list[str], typer.Option(help="device uid; repeat")] = [],  # noqa: B006
        waves: Annotated[str, typer.Option(help="cumulative % per wave")] = "2,10,50,100",
        success: Annotated[float, typer.Option(help="% updated for a wave to succeed")] = 95.0,
        error: Annotated[float, typer.Option(help="% failed that stops the campaign")] = 10.0,
        approval: Annotated[bool, typer.Option(help="wait for approval between waves")] = False,
        max_ward_percent: Annotated[
            float | None, typer.Option(help="most of a ward at once")
        ] = None,
        guard_min: Annotated[
            float | None, typer.Option(help="minutes kept free before a broadcast")
        ] = None,
        timeout_s: Annotated[
            int | None, typer.Option(help="seconds a device has to finish")
        ] = None,
    ) -> None:
        """Plan a campaign: canary first, then growing waves."""
        data = CampaignIn(
            name=name,
            release_id=release,
            wards=ward,
            group=group,
            devices=device,
            waves=[float(w) for w in waves.split(",") if w.strip()],
            success_percent=success,
            error_percent=error,
            require_approval=approval,
            max_ward_percent=max_ward_percent,
            broadcast_guard_min=guard_min,
            device_timeout_s=timeout_s,
        )
        created = with_pool(lambda pool: campaigns(pool).create(CLI, data))
        c = created.campaign
        console.print(f"campaign {c.id} created: {c.model} → {c.version}, waves {c.wave_sizes}")
        for device_row, why in created.refused:
            console.print(f"  refused {device_row.uid}: {why}", highlight=False)

    @rollout.command("status")
    def status(
        campaign_id: IdArgument,
        watch: Annotated[bool, typer.Option(help="follow until the campaign ends")] = False,
        every: Annotated[float, typer.Option(help="seconds between refreshes")] = 1.0,
    ) -> None:
        """Waves with per-state counts and a progress bar each."""

        async def follow(pool: Any) -> None:
            first = render(*await snapshot(pool, campaign_id))
            if not watch:
                console.print(first)
                return
            with Live(first, console=console, refresh_per_second=4) as live:
                while True:
                    campaign, waves_, counts = await snapshot(pool, campaign_id)
                    live.update(render(campaign, waves_, counts))
                    if campaign.state in FINAL:
                        return
                    await asyncio.sleep(every)

        with_pool(follow)

    def change(verb: str, work: Callable[[Campaigns, int], Awaitable[Any]]) -> None:
        @rollout.command(verb)
        def command(campaign_id: IdArgument) -> None:
            result = with_pool(lambda pool: work(campaigns(pool), campaign_id))
            campaign = result[0] if isinstance(result, tuple) else result
            console.print(f"campaign {campaign.id}: {campaign.state}")

        command.__doc__ = {
            "pause": "Start no more devices; those updating finish.",
            "resume": "Carry on after a pause.",
            "cancel": "Stop for good; devices not yet installing abandon the update.",
            "approve": "Start the next wave of a campaign waiting for approval.",
            "retry": "Send the firmware again to the devices that failed.",
        }[verb]

    now: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731
    change("pause", lambda c, i: c.pause(CLI, i))
    change("resume", lambda c, i: c.resume(CLI, i))
    change("cancel", lambda c, i: c.cancel(CLI, i, now()))
    change("approve", lambda c, i: c.approve(CLI, i, now()))
    change("retry", lambda c, i: c.retry(CLI, i))
