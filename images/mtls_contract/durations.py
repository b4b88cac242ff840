"""How long a certificate lives: the duration syntax (``90m``, ``24h``, ``1h30m``, ``30s``,
``7d``), the CA's default bounds, the backdating of notBefore and when to renew.

Shared by the CA (``--min-duration``, ``POST /sign``), the operator (``hello-mtls.dev/duration``,
the pod-certificate lifetimes) and the admission policy's copy of the syntax. Pure functions;
every rejection is a ``ValueError`` with a short, exact message.
"""

from __future__ import annotations

import datetime
import re

__all__ = [
    "BACKDATE",
    "DEFAULT_MAXIMUM",
    "DEFAULT_MINIMUM",
    "RENEW_FRACTION",
    "RENEW_FRACTION_TEXT",
    "check_duration",
    "format_duration",
    "parse_duration",
    "parse_fraction",
]

RENEW_FRACTION = 2 / 3
"""Renew a certificate once this fraction of its lifetime has passed (the chart's
``certificates.renewFraction``, written 0.6667)."""
RENEW_FRACTION_TEXT = f"{RENEW_FRACTION:.4f}"
"""`RENEW_FRACTION` as the chart writes it (``HELLO_MTLS_RENEW_FRACTION=0.6667``): the operator's
default, and the command's when the operator's Deployment sets none."""
DEFAULT_MINIMUM = datetime.timedelta(minutes=5)
DEFAULT_MAXIMUM = datetime.timedelta(days=30)
BACKDATE = datetime.timedelta(minutes=1)
"""How far before the signing time a leaf's notBefore lies (clients whose clock runs a little
behind must still accept a certificate issued just now): it lives notAfter - notBefore =
duration + BACKDATE."""
_MAX_DURATION_TEXT = 32

# ASCII digits only, as the admission policy reads them: \d and int() take any Unicode digit.
_DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def parse_duration(text: str) -> datetime.timedelta:
    """Parse ``90m``, ``24h``, ``1h30m``, ``30s`` or ``7d`` (units in the order d, h, m, s; ASCII
    digits only).

    Raises:
        ValueError: ``duration 'x' is not like 90m, 24h, 1h30m or 30s`` and the like.
    """
    if len(text) > _MAX_DURATION_TEXT:
        raise ValueError(f"duration '{text[:_MAX_DURATION_TEXT]}...' is too long")
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"duration '{text}' is not like 90m, 24h, 1h30m or 30s")
    seconds = sum(int(n) * unit for n, (_, unit) in zip(match.groups(), _UNITS, strict=True) if n)
    try:
        duration = datetime.timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"duration '{text}' is too long") from None
    if not duration:
        raise ValueError(f"duration '{text}' must be longer than zero")
    return duration


def format_duration(duration: datetime.timedelta) -> str:
    """Render a duration the way `parse_duration` reads it (``1h30m``); whole seconds only."""
    rest = int(duration.total_seconds())
    parts = []
    for suffix, unit in _UNITS:
        count, rest = divmod(rest, unit)
        if count:
            parts.append(f"{count}{suffix}")
    return "".join(parts) or "0s"


def parse_fraction(text: str) -> float:
    """Parse a renewal fraction (``HELLO_MTLS_RENEW_FRACTION``): a number strictly between 0 and 1.

    Raises:
        ValueError: ``1.5 is not between 0 and 1``, or the text is not a number.
    """
    fraction = float(text)
    if not 0 < fraction < 1:
        raise ValueError(f"{fraction} is not between 0 and 1")
    return fraction


def check_duration(
    duration: datetime.timedelta,
    *,
    minimum: datetime.timedelta = DEFAULT_MINIMUM,
    maximum: datetime.timedelta = DEFAULT_MAXIMUM,
) -> None:
    """Check that ``minimum <= duration <= maximum``.

    Raises:
        ValueError: ``duration 2m is below the CA minimum of 5m`` (or above the maximum).
    """
    if duration < minimum:
        raise ValueError(
            f"duration {format_duration(duration)} is below the CA minimum of "
            f"{format_duration(minimum)}"
        )
    if duration > maximum:
        raise ValueError(
            f"duration {format_duration(duration)} is above the CA maximum of "
            f"{format_duration(maximum)}"
        )
