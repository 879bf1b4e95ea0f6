"""Bulk import (CSV, JSON) with a per-row error report, and export (CSV, GeoJSON)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from hub.devices.models import Device
from hub.devices.schemas import DeviceIn, DeviceOut
from hub.errors import BadRequest, FieldProblem, PayloadTooLarge, ValidationFailed

CSV_COLUMNS = (
    "uid",
    "kind",
    "name",
    "serial",
    "vendor",
    "model",
    "firmware_version",
    "ward",
    "latitude",
    "longitude",
    "endpoint",
    "tags",
    "lifecycle",
)
READ_ONLY_COLUMNS = ("status", "status_reason", "last_seen")
"""What an export carries that only the hub sets: an import of that export skips them."""
EXPORT_COLUMNS = (*CSV_COLUMNS, *READ_ONLY_COLUMNS)
MAX_IMPORT_ROWS = 20_000
_FIELD_IN_MESSAGE = re.compile(r"at `\$(?:\[\d+\])?\.?(?P<field>[A-Za-z_]+)")


def parse_csv(data: bytes) -> list[dict[str, Any]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            "the CSV file is not UTF-8 text",
            [FieldProblem("file", f"byte {exc.start} is not UTF-8")],
        ) from exc
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = reader.fieldnames or []
        unknown = sorted(set(header) - set(EXPORT_COLUMNS))
        if not header or unknown or "uid" not in header or "kind" not in header:
            raise BadRequest(
                "the CSV header is not the device import header",
                [
                    FieldProblem(
                        "header",
                        f"expected columns from {', '.join(CSV_COLUMNS)} (uid and kind required)"
                        + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
                    )
                ],
            )
        rows: list[dict[str, Any]] = []
        for line in reader:
            if None in line:
                raise BadRequest(
                    "a CSV row has more cells than the header",
                    [
                        FieldProblem(
                            "file", f"row {len(rows) + 1} has extra cells", row=len(rows) + 1
                        )
                    ],
                )
            rows.append(csv_row({k: v for k, v in line.items() if k not in READ_ONLY_COLUMNS}))
            if len(rows) > MAX_IMPORT_ROWS:
                raise too_many_rows()
    except csv.Error as exc:
        raise BadRequest(
            "the file is not valid CSV", [FieldProblem("file", f"line {reader.line_num}: {exc}")]
        ) from exc
    return rows


def csv_row(line: dict[str, str | None]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, raw in line.items():
        value = (raw or "").strip()
        if key == "tags":
            row["tags"] = [t.strip() for t in value.split(";") if t.strip()]
        elif key in ("latitude", "longitude", "serial", "ward") and value == "":
            row[key] = None
        elif key == "lifecycle" and value == "":
            continue
        else:
            row[key] = value
    return row


def parse_json(data: bytes) -> list[dict[str, Any]]:
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest("the file is not valid JSON", [FieldProblem("file", str(exc))]) from exc
    if isinstance(document, dict) and isinstance(document.get("devices"), list):
        document = document["devices"]
    if not isinstance(document, list) or not all(isinstance(r, dict) for r in document):
        raise BadRequest(
            "expected a JSON array of device objects",
            [FieldProblem("file", 'give [{"uid": ..., "kind": ...}, ...]')],
        )
    if len(document) > MAX_IMPORT_ROWS:
        raise too_many_rows()
    return [{k: v for k, v in row.items() if k not in READ_ONLY_COLUMNS} for row in document]


def json_record(device: DeviceOut) -> dict[str, Any]:
    """A device as the JSON export writes it and the JSON import reads it back."""
    data = msgspec.to_builtins(device)
    return {column: data.get(column) for column in EXPORT_COLUMNS}


def too_many_rows() -> PayloadTooLarge:
    return PayloadTooLarge(f"an import takes at most {MAX_IMPORT_ROWS} rows; split the file")


def field_of(error: msgspec.ValidationError) -> str:
    match = _FIELD_IN_MESSAGE.search(str(error))
    if match:
        return match["field"]
    missing = re.search(r"required field `(?P<field>\w+)`", str(error))
    unknown = re.search(r"unknown field `(?P<field>\w+)`", str(error))
    return (missing or unknown)["field"] if (missing or unknown) else "row"  # type: ignore[index]


async def validate_rows(
    rows: Sequence[dict[str, Any]], known_wards: Iterable[str], *, strict_types: bool
) -> list[DeviceIn]:
    """Every row checked (types, ranges, wards, uid clashes); all problems raised at once."""
    if not rows:
        raise ValidationFailed("the import has no rows", [FieldProblem("file", "it is empty")])
    wards = set(known_wards)
    problems: list[FieldProblem] = []
    valid: list[tuple[int, DeviceIn]] = []
    for number, row in enumerate(rows, start=1):
        try:
            device = msgspec.convert(row, DeviceIn, strict=strict_types)
        except msgspec.ValidationError as exc:
            problems.append(FieldProblem(field_of(exc), str(exc), row=number))
            continue
        if device.ward is not None and device.ward not in wards:
            problems.append(FieldProblem("ward", f"no ward with code {device.ward!r}", row=number))
        elif device.ward is None and device.lifecycle == "active":
            problems.append(
                FieldProblem("ward", "an active device must belong to a ward", row=number)
            )
        if (device.latitude is None) != (device.longitude is None):
            problems.append(
                FieldProblem("latitude", "give latitude and longitude together", row=number)
            )
        valid.append((number, device))
    counts = Counter(d.uid for _, d in valid)
    problems += [
        FieldProblem("uid", f"uid {d.uid!r} appears {counts[d.uid]} times in the file", row=n)
        for n, d in valid
        if counts[d.uid] > 1
    ]
    taken: set[str] = set(
        await Device.filter(uid__in=list(counts)).values_list("uid", flat=True)  # type: ignore[arg-type]
    )
    problems += [
        FieldProblem("uid", f"a device with uid {d.uid!r} exists already", row=n)
        for n, d in valid
        if d.uid in taken
    ]
    serials = Counter((d.kind, d.serial) for _, d in valid if d.serial)
    problems += [
        FieldProblem("serial", f"serial {d.serial!r} appears twice in the file", row=n)
        for n, d in valid
        if d.serial and serials[(d.kind, d.serial)] > 1
    ]
    if problems:
        problems.sort(key=lambda p: (p.row or 0, p.field))
        raise ValidationFailed(
            f"{len({p.row for p in problems})} of {len(rows)} rows have problems; nothing was "
            "imported",
            problems[:1000],
        )
    return [d for _, d in valid]


def csv_header() -> str:
    return csv_line(EXPORT_COLUMNS)


def csv_line(values: Iterable[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def csv_record(device: DeviceOut) -> str:
    data = msgspec.to_builtins(device)
    data["tags"] = ";".join(device.tags)
    return csv_line("" if data.get(c) is None else data[c] for c in EXPORT_COLUMNS)


def geojson_feature(device: DeviceOut, base_url: str = "") -> dict[str, Any]:
    properties = msgspec.to_builtins(device)
    del properties["latitude"], properties["longitude"]
    properties["href"] = f"{base_url}/api/v1/devices/{device.uid}"
    if device.kind == "camera":
        properties["snapshot"] = f"{base_url}/api/v1/cameras/{device.uid}/snapshot"
        properties["live_view"] = f"{base_url}/cameras/{device.uid}"
        properties["hls"] = f"{base_url}/api/v1/cameras/{device.uid}/live/sub/index.m3u8"
    if device.latitude is not None and device.longitude is not None:
        properties["nearby_cameras"] = f"{base_url}/api/v1/cameras/near?device={device.uid}"
    geometry = (
        {"type": "Point", "coordinates": [device.longitude, device.latitude]}
        if device.latitude is not None and device.longitude is not None
        else None
    )
    return {"type": "Feature", "id": device.uid, "geometry": geometry, "properties": properties}
