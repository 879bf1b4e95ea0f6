"""Ward outlines: a GeoJSON Polygon or MultiPolygon (RFC 7946) per ward, for the map.

Positions are [longitude, latitude] in WGS 84 (RFC 7946 section 3.1.1); a linear ring has
four or more positions and its first and last are the same (section 3.1.6). Exterior rings
may be given in either winding order: section 3.1.6 asks writers for counterclockwise but
tells parsers not to reject the other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from hub.errors import FieldProblem, ValidationFailed

MAX_POSITIONS = 20_000  # a ward's official outline has a few thousand at most
MAX_PROBLEMS = 10


def _number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _ring_problems(ring: Any, where: str) -> list[FieldProblem]:
    if not isinstance(ring, list):
        return [FieldProblem(where, "a linear ring is a list of positions")]
    problems: list[FieldProblem] = []
    if len(ring) < 4:
        problems.append(FieldProblem(where, "a linear ring has at least four positions"))
    for i, position in enumerate(ring):
        at = f"{where}[{i}]"
        if not isinstance(position, list) or not 2 <= len(position) <= 3:
            problems.append(FieldProblem(at, "a position is [longitude, latitude]"))
            continue
        if not all(_number(v) for v in position):
            problems.append(FieldProblem(at, "longitude and latitude are numbers"))
            continue
        longitude, latitude = position[0], position[1]
        if not -180 <= longitude <= 180:
            problems.append(FieldProblem(at, "longitude is from -180 to 180"))
        if not -90 <= latitude <= 90:
            problems.append(FieldProblem(at, "latitude is from -90 to 90"))
    if len(ring) >= 4 and not problems and ring[0][:2] != ring[-1][:2]:
        problems.append(FieldProblem(where, "a linear ring ends where it starts (RFC 7946 3.1.6)"))
    return problems


def _polygon_problems(rings: Any, where: str) -> list[FieldProblem]:
    if not isinstance(rings, list) or not rings:
        return [FieldProblem(where, "a polygon is a list of linear rings, the outline first")]
    problems: list[FieldProblem] = []
    for i, ring in enumerate(rings):
        problems += _ring_problems(ring, f"{where}[{i}]")
    return problems


def positions(geometry: dict[str, Any]) -> int:
    polygons = (
        [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    )
    return sum(len(ring) for polygon in polygons for ring in polygon)


def check_boundary(geometry: Any) -> dict[str, Any]:
    """The outline as stored (type and coordinates only), or ValidationFailed saying where."""
    if not isinstance(geometry, dict):
        raise ValidationFailed(
            "a ward's boundary is a GeoJSON geometry",
            [FieldProblem("type", "give a Polygon or MultiPolygon object")],
        )
    kind = geometry.get("type")
    if kind == "Feature":
        raise ValidationFailed(
            "give the geometry, not a Feature",
            [FieldProblem("type", "send the Feature's geometry: a Polygon or MultiPolygon")],
        )
    if kind not in ("Polygon", "MultiPolygon"):
        raise ValidationFailed(
            "a ward's boundary is a Polygon or a MultiPolygon",
            [FieldProblem("type", "Polygon or MultiPolygon")],
        )
    unknown = sorted(set(geometry) - {"type", "coordinates", "bbox"})
    if unknown:
        raise ValidationFailed(
            "unknown members in the geometry",
            [FieldProblem(name, "not a member of a GeoJSON geometry") for name in unknown],
        )
    coordinates = geometry.get("coordinates")
    if kind == "Polygon":
        problems = _polygon_problems(coordinates, "coordinates")
    elif not isinstance(coordinates, list) or not coordinates:
        problems = [FieldProblem("coordinates", "a MultiPolygon is a list of polygons")]
    else:
        problems = []
        for i, polygon in enumerate(coordinates):
            problems += _polygon_problems(polygon, f"coordinates[{i}]")
    if problems:
        raise ValidationFailed(
            "the boundary is not a valid GeoJSON polygon", problems[:MAX_PROBLEMS]
        )
    stored = {"type": kind, "coordinates": coordinates}
    if positions(stored) > MAX_POSITIONS:
        raise ValidationFailed(
            "the boundary has too many positions",
            [FieldProblem("coordinates", f"at most {MAX_POSITIONS} positions")],
        )
    return stored


def hull_outline(points: Sequence[tuple[float, float]], margin: float) -> dict[str, Any] | None:
    """A Polygon around (longitude, latitude) points: their convex hull (Andrew's monotone
    chain), each corner pushed `margin` degrees away from the centre; counterclockwise."""
    unique = sorted(set(points))
    if len(unique) < 3:
        return None

    def cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[float, float]] = []
    for p in unique:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[tuple[float, float]] = []
    for p in reversed(unique):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    hull = lower[:-1] + upper[:-1]
    cx = sum(p[0] for p in hull) / len(hull)
    cy = sum(p[1] for p in hull) / len(hull)
    ring = []
    for x, y in hull:
        d = math.hypot(x - cx, y - cy) or 1.0
        ring.append([round(x + (x - cx) / d * margin, 6), round(y + (y - cy) / d * margin, 6)])
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}
