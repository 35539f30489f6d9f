"""Recurrence expansion (RRULE/EXRULE/RDATE/EXDATE) on top of dateutil.rrule."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from dateutil.rrule import rrule, rruleset, rrulestr  # type: ignore[import-untyped]

from .errors import bad_request
from .timeutil import EventTime, zone

# Infinite rules are cut off here, as Google stops expanding somewhere too.
MAX_INSTANCES = 1000
_MAX_ITERATIONS = 50_000
_UNTIL = re.compile(r"UNTIL=([0-9TZ]+)", re.IGNORECASE)


def validate(lines: object) -> list[str]:
    """The recurrence lines if they parse, else 400 ``invalid``."""
    if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
        raise bad_request("invalid", "Invalid recurrence rule.", "recurrence")
    probe = EventTime(False, None, datetime(2000, 1, 1, tzinfo=UTC), None)
    try:
        _build(probe, lines)
    except (ValueError, TypeError, KeyError) as err:
        raise bad_request("invalid", "Invalid recurrence rule.", "recurrence") from err
    return list(lines)


def expand(
    start: EventTime,
    lines: Sequence[str],
    after: datetime | None = None,
    before: datetime | None = None,
    limit: int = MAX_INSTANCES,
) -> list[EventTime]:
    """Original start times of the instances with ``after < start < before`` (UTC bounds)."""
    try:
        rules = _build(start, lines)
    except (ValueError, TypeError, KeyError):
        return []
    out: list[EventTime] = []
    for iterations, local in enumerate(rules):
        if iterations >= _MAX_ITERATIONS or len(out) >= limit:
            break
        instance = start.shifted_to(local)
        moment = instance.utc
        if before is not None and moment >= before:
            break
        if after is not None and moment <= after:
            continue
        out.append(instance)
    return out


def contains(start: EventTime, lines: Sequence[str], original: EventTime) -> bool:
    """Whether ``original`` is one of the series' instance start times."""
    moment = original.utc
    return any(
        candidate.utc == moment
        for candidate in expand(
            start, lines, moment - timedelta(seconds=1), moment + timedelta(seconds=1), 2
        )
    )


def _build(start: EventTime, lines: Sequence[str]) -> rruleset:
    dtstart = start.local
    rules = rruleset()
    for line in lines:
        name, params, value = _split(line)
        if name in ("RRULE", "EXRULE"):
            rule = rrulestr(_normalise_until(value, dtstart), dtstart=dtstart)
            if not isinstance(rule, rrule):
                raise ValueError(line)
            (rules.rrule if name == "RRULE" else rules.exrule)(rule)
        elif name in ("RDATE", "EXDATE"):
            for item in value.split(","):
                moment = _parse_date_value(item.strip(), params, dtstart)
                (rules.rdate if name == "RDATE" else rules.exdate)(moment)
        else:
            raise ValueError(f"unsupported recurrence line {line!r}")
    return rules


def _split(line: str) -> tuple[str, dict[str, str], str]:
    head, sep, value = line.strip().partition(":")
    if not sep:
        raise ValueError(line)
    name, *raw_params = head.split(";")
    params = {}
    for param in raw_params:
        key, _, param_value = param.partition("=")
        params[key.upper()] = param_value
    return name.upper(), params, value


def _parse_stamp(value: str) -> tuple[date, time | None, bool]:
    """(date, time or None, is_utc) for ``YYYYMMDD[THHMMSS[Z]]``."""
    match = re.fullmatch(r"(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z?))?", value.upper())
    if not match:
        raise ValueError(value)
    day = date(int(match[1]), int(match[2]), int(match[3]))
    if match[4] is None:
        return day, None, False
    return day, time(int(match[4]), int(match[5]), int(match[6])), bool(match[7])


def _parse_date_value(value: str, params: dict[str, str], dtstart: datetime) -> datetime:
    day, clock, is_utc = _parse_stamp(value)
    if dtstart.tzinfo is None:  # all-day series: only the date matters
        return datetime.combine(day, time())
    if clock is None:
        return datetime.combine(day, dtstart.timetz().replace(tzinfo=None), tzinfo=dtstart.tzinfo)
    tz: tzinfo | None = UTC if is_utc else (zone(params.get("TZID")) or dtstart.tzinfo)
    return datetime.combine(day, clock, tzinfo=tz)


def _normalise_until(value: str, dtstart: datetime) -> str:
    """dateutil wants UNTIL in UTC for aware starts and floating for naive ones."""
    match = _UNTIL.search(value)
    if not match:
        return value
    day, clock, is_utc = _parse_stamp(match[1])
    if dtstart.tzinfo is None:
        until = day.strftime("%Y%m%d")
    else:
        if clock is None:
            local = datetime.combine(day, time(23, 59, 59), tzinfo=dtstart.tzinfo)
        else:
            local = datetime.combine(day, clock, tzinfo=UTC if is_utc else dtstart.tzinfo)
        until = local.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return value[: match.start(1)] + until + value[match.end(1) :]
