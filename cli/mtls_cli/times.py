"""Times as the API and the CA write them (RFC 3339), and as the CLI prints them."""

from __future__ import annotations

import datetime

__all__ = ["ago", "left_of", "parse_time", "span"]


def parse_time(value: object) -> datetime.datetime | None:
    """An RFC 3339 time (``2026-12-07T10:00:00Z``); None when absent or not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def ago(age: datetime.timedelta) -> str:
    """``5m ago``."""
    return f"{span(age)} ago"


def left_of(left: datetime.timedelta) -> str:
    """``for 12d`` while ``left`` is positive, else ``no more (expired)``."""
    return f"for {span(left)}" if left.total_seconds() > 0 else "no more (expired)"


def span(length: datetime.timedelta) -> str:
    """``45s``, ``3m``, ``5h``, ``12d``: the largest unit that fits twice."""
    seconds = int(abs(length.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
