"""Build the IOC's Grafana dashboards (grafana-foundation-sdk) and write them as JSON.

Run ``python -m dashboards.build`` after changing a panel; ``--check`` fails when the
checked-in JSON differs from what this package builds; ``--lang en --out DIR`` writes the
English build elsewhere. Uids are fixed; each dashboard's ``version`` goes up by one
whenever its content changes (it is read back from the checked-in file), so Grafana's
file provisioning and ``iochub grafana sync`` see a new version exactly when it is one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import alerts, broadcasts, health, sensors
from dashboards.kit import LANGS, Board, Lang, language

JSON = dict[str, Any]
HERE = Path(__file__).resolve().parent
BOARDS: dict[str, Callable[[], Board]] = {
    sensors.UID: sensors.dashboard,
    health.UID: health.dashboard,
    broadcasts.UID: broadcasts.dashboard,
    alerts.UID: alerts.dashboard,
}


def file_name(uid: str) -> str:
    return f"{uid}.json"


def _content(uid: str, lang: Lang) -> JSON:
    """The dashboard as the SDK builds it, panel ids numbered, without a version."""
    with language(lang):
        built = BOARDS[uid]().builder.build()
    model: JSON = json.loads(json.dumps(built, cls=JSONEncoder))
    model["id"] = None  # Grafana assigns it
    for number, panel in enumerate(model["panels"], start=1):
        panel["id"] = number
    model.pop("version", None)
    return model


def _checked_in(uid: str, directory: Path) -> JSON | None:
    path = directory / file_name(uid)
    if not path.is_file():
        return None
    model: JSON = json.loads(path.read_text("utf-8"))
    return model


def versioned(content: JSON, previous: JSON | None) -> JSON:
    """The content with its version: the previous one if nothing changed, else one more."""
    version = 1
    if previous is not None:
        before = {key: value for key, value in previous.items() if key != "version"}
        old = int(previous.get("version") or 0)
        version = old if before == content and old else old + 1
    return {**content, "version": version}


def dashboards(lang: Lang = "vi", directory: Path = HERE) -> dict[str, JSON]:
    """Each dashboard's JSON model, by uid. Versions follow the Vietnamese build in
    ``directory`` (the provisioned one); an English build carries the same numbers."""
    models = {}
    for uid in BOARDS:
        reference = versioned(_content(uid, "vi"), _checked_in(uid, directory))
        content = reference if lang == "vi" else _content(uid, lang)
        models[uid] = {**content, "version": reference["version"]}
    return models


def render(model: JSON) -> str:
    return json.dumps(model, indent=2, ensure_ascii=False) + "\n"


def stale_files(directory: Path = HERE) -> list[Path]:
    """The dashboard files whose content (or version) differs from what this builds."""
    return [
        directory / file_name(uid)
        for uid, model in dashboards("vi", directory).items()
        if not (directory / file_name(uid)).is_file()
        or (directory / file_name(uid)).read_text("utf-8") != render(model)
    ]


def write(lang: Lang = "vi", out: Path = HERE) -> list[Path]:
    """Write the build; a Vietnamese one versions against the files it replaces, any
    other against the checked-in ones."""
    written = []
    out.mkdir(parents=True, exist_ok=True)
    for uid, model in dashboards(lang, out if lang == "vi" else HERE).items():
        path = out / file_name(uid)
        path.write_text(render(model), "utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="fail if the checked-in JSON is out of date"
    )
    parser.add_argument("--lang", choices=LANGS, default="vi", help="titles' language")
    parser.add_argument("--out", type=Path, default=None, help="where to write the JSON")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"out of date: {path}", file=sys.stderr)
        return 1 if stale else 0
    if args.lang != "vi" and args.out is None:
        parser.error("the checked-in dashboards are the Vietnamese build: give --out for others")
    for path in write(args.lang, args.out or HERE):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
