"""Alert rules: their shape, their validation, and the pure step that evaluates them."""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec

from hub.alerts import windows
from hub.alerts.windows import ActiveWindow, ActiveWindowPatch, LocalWindow
from hub.errors import FieldProblem
from hub.telemetry import METRICS

Severity = Literal["warning", "minor", "major", "critical"]
SEVERITY_RANK = {"warning": 0, "minor": 1, "major": 2, "critical": 3}
Comparison = Literal[">", ">=", "<", "<="]
TEMPLATE_FIELDS = frozenset(
    {
        "device",
        "device_name",
        "ward",
        "metric",
        "value",
        "threshold",
        "unit",
        "rule",
        "severity",
        "status",
        "reason",
    }
)
DEFAULT_MESSAGES = {
    "threshold": "{metric} at {device} is {value:.1f} {unit} (limit {threshold:g})",
    "offline": "{device} is offline: {reason}",
    "degraded": "{device} is degraded: {reason}",
}


class Scope(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["all", "kind", "ward", "group", "device"] = "all"
    value: Annotated[str, msgspec.Meta(max_length=128)] = ""
    """A kind (camera, speaker, sensor), ward code, group id or device uid; empty for all."""


class Escalation(msgspec.Struct, forbid_unknown_fields=True):
    threshold: float
    severity: Severity


class RuleIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    kind: Literal["threshold", "offline", "degraded"]
    severity: Severity
    scope: Scope = msgspec.field(default_factory=Scope)
    metric: str | None = None
    comparison: Comparison | None = None
    threshold: float | None = None
    clear_threshold: float | None = None
    """Where a firing alert clears; defaults to the threshold (no hysteresis)."""
    escalations: Annotated[list[Escalation], msgspec.Meta(max_length=4)] = msgspec.field(
        default_factory=list
    )
    """Higher severities at further thresholds: a rising alert re-notifies."""
    for_seconds: Annotated[int, msgspec.Meta(ge=0, le=7 * 86400)] = 0
    """How long the condition must hold before the alert fires (offline: longer than this)."""
    message: Annotated[str, msgspec.Meta(max_length=500)] = ""
    enabled: bool = True
    window: ActiveWindow | None = None
    """Local times (the hub's time zone) in which the rule may open alerts; none: always.
    An alert it opened resolves when the window closes; for_seconds counts inside it."""


class ScopePatch(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["all", "kind", "ward", "group", "device"] | msgspec.UnsetType = msgspec.UNSET
    value: Annotated[str, msgspec.Meta(max_length=128)] | msgspec.UnsetType = msgspec.UNSET


class RulePatch(msgspec.Struct, forbid_unknown_fields=True):
    """A JSON Merge Patch (RFC 7396) of a rule: only what changes; null resets a field."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    kind: Literal["threshold", "offline", "degraded"] | msgspec.UnsetType = msgspec.UNSET
    severity: Severity | msgspec.UnsetType = msgspec.UNSET
    scope: ScopePatch | msgspec.UnsetType | None = msgspec.UNSET
    metric: str | msgspec.UnsetType | None = msgspec.UNSET
    comparison: Comparison | msgspec.UnsetType | None = msgspec.UNSET
    threshold: float | msgspec.UnsetType | None = msgspec.UNSET
    clear_threshold: float | msgspec.UnsetType | None = msgspec.UNSET
    escalations: (
        Annotated[list[Escalation], msgspec.Meta(max_length=4)] | msgspec.UnsetType | None
    ) = msgspec.UNSET
    for_seconds: Annotated[int, msgspec.Meta(ge=0, le=7 * 86400)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    message: Annotated[str, msgspec.Meta(max_length=500)] | msgspec.UnsetType | None = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET
    window: ActiveWindowPatch | msgspec.UnsetType | None = msgspec.UNSET


def breaches(value: float, comparison: str, threshold: float) -> bool:
    if comparison == ">":
        return value > threshold
    if comparison == ">=":
        return value >= threshold
    if comparison == "<":
        return value < threshold
    return value <= threshold


def beyond(a: float, b: float, comparison: str) -> bool:
    """a lies further into the alarming side than b."""
    return a > b if comparison in (">", ">=") else a < b


def validate(rule: RuleIn) -> list[FieldProblem]:
    problems = []
    if rule.kind == "threshold":
        if rule.metric is None or rule.metric not in METRICS:
            problems.append(
                FieldProblem("metric", f"name a catalog metric ({', '.join(sorted(METRICS))})")
            )
        if rule.comparison is None:
            problems.append(FieldProblem("comparison", "one of >, >=, <, <="))
        if rule.threshold is None:
            problems.append(FieldProblem("threshold", "a threshold rule needs a threshold"))
        if rule.comparison and rule.threshold is not None:
            clear = rule.clear_threshold if rule.clear_threshold is not None else rule.threshold
            if beyond(clear, rule.threshold, rule.comparison):
                side = "at or below" if rule.comparison in (">", ">=") else "at or above"
                problems.append(
                    FieldProblem(
                        "clear_threshold",
                        f"must be {side} the threshold ({rule.threshold:g}): "
                        "an alert clears on the safe side of where it fires",
                    )
                )
            previous_threshold, previous_rank = rule.threshold, SEVERITY_RANK[rule.severity]
            for n, step in enumerate(rule.escalations):
                if not beyond(step.threshold, previous_threshold, rule.comparison):
                    problems.append(
                        FieldProblem(
                            f"escalations[{n}].threshold",
                            "each step must lie beyond the previous one",
                        )
                    )
                if SEVERITY_RANK[step.severity] <= previous_rank:
                    problems.append(
                        FieldProblem(
                            f"escalations[{n}].severity", "each step must raise the severity"
                        )
                    )
                previous_threshold, previous_rank = step.threshold, SEVERITY_RANK[step.severity]
    else:
        for name in ("metric", "comparison", "threshold", "clear_threshold"):
            if getattr(rule, name) is not None:
                problems.append(FieldProblem(name, f"a {rule.kind} rule takes no {name}"))
        if rule.escalations:
            problems.append(FieldProblem("escalations", f"a {rule.kind} rule takes no escalations"))
    if rule.window is not None:
        problems += window_checked(rule, rule.window)
    if rule.scope.type == "all" and rule.scope.value:
        problems.append(FieldProblem("scope.value", "scope all takes no value"))
    if rule.scope.type != "all" and not rule.scope.value:
        problems.append(FieldProblem("scope.value", f"name the {rule.scope.type}"))
    if rule.scope.type == "kind" and rule.scope.value not in ("camera", "speaker", "sensor"):
        problems.append(FieldProblem("scope.value", "camera, speaker or sensor"))
    if problem := template_problem(rule.message):
        problems.append(FieldProblem("message", problem))
    return problems


def window_checked(rule: RuleIn, window: ActiveWindow) -> list[FieldProblem]:
    if rule.kind != "threshold":
        return [
            FieldProblem(
                "window", f"a {rule.kind} rule watches at every hour: only threshold rules take one"
            )
        ]
    found = windows.problems(window)
    length = windows.length(window)
    if not found and length is not None and rule.for_seconds >= length.total_seconds():
        found.append(
            FieldProblem(
                "for_seconds",
                f"must be shorter than the window ({window.start}-{window.end}, "
                f"{length.total_seconds() / 3600:g} h), or no alert could ever open",
            )
        )
    return found


def template_problem(template: str) -> str | None:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"not a valid template: {exc}"
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS:
            return f"unknown field {{{name}}}; use {', '.join(sorted(TEMPLATE_FIELDS))}"
        if conversion or (spec and "{" in spec):
            return "conversions and nested fields are not allowed"
    return None


def render(template: str, values: Mapping[str, Any]) -> str:
    try:
        return template.format_map(values)
    except (ValueError, TypeError, KeyError):
        # A format spec that does not fit the value (".1f" on text): render it plainly.
        parts = []
        for literal, name, _spec, _conversion in string.Formatter().parse(template):
            parts.append(literal)
            if name is not None:
                parts.append(str(values.get(name, "")))
        return "".join(parts)


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    id: int
    name: str
    metric: str
    comparison: str
    threshold: float
    clear_threshold: float
    severity: str
    escalations: tuple[tuple[float, str], ...]
    hold: timedelta
    message: str
    window: LocalWindow | None = None

    def severity_for(self, value: float) -> str:
        severity = self.severity
        for threshold, step in self.escalations:
            if breaches(value, self.comparison, threshold):
                severity = step
        return severity

    def cleared(self, value: float) -> bool:
        return not breaches(value, self.comparison, self.clear_threshold)


@dataclass(frozen=True, slots=True)
class Track:
    """Where a (rule, device) pair stands."""

    pending_since: datetime | None = None
    severity: str | None = None  # None: no open alert

    @property
    def firing(self) -> bool:
        return self.severity is not None


@dataclass(frozen=True, slots=True)
class Action:
    kind: Literal["fire", "resolve", "raise"]
    severity: str | None = None
    since: datetime | None = None
    reason: str | None = None
    """Why a resolve happened, when the value alone does not say it."""


def step(
    rule: ThresholdRule, track: Track, value: float, at: datetime, now: datetime | None = None
) -> tuple[Track, Action | None]:
    """One reading through one rule: the new track and what to do about it, if anything.

    A rule with a window judges the reading by the local time it was measured at. Outside
    the window the reading opens nothing, drops what was pending and resolves a firing
    alert (the window closed); so does a reading whose window had closed already by ``now``,
    the hub's clock, when it arrived. Inside, a pending duration counts from within the
    window's current opening only, never from an earlier night.
    """
    if rule.window is not None:
        opening = rule.window.occurrence(at)
        if opening is None or (now is not None and now >= opening.closes):
            if track.firing:
                return Track(), Action("resolve", reason=rule.window.closed_reason())
            return Track(), None
        if track.pending_since is not None and track.pending_since < opening.opens:
            track = Track()
    if track.firing:
        if rule.cleared(value):
            return Track(), Action("resolve")
        severity = rule.severity_for(value)
        if SEVERITY_RANK[severity] > SEVERITY_RANK[track.severity or "warning"]:
            return Track(severity=severity), Action("raise", severity)
        return track, None
    if not breaches(value, rule.comparison, rule.threshold):
        return Track(), None
    since = track.pending_since or at
    if at - since >= rule.hold:
        return Track(severity=rule.severity_for(value)), Action(
            "fire", rule.severity_for(value), since
        )
    return Track(pending_since=since), None
