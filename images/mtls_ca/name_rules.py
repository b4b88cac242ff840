"""What the CA agrees to sign: pure functions over names and durations.

Shared with the operator, which checks annotations before it asks the CA; the CA checks again.
Only the standard library here. Every rejection is a ``ValueError`` with a short, exact message
that can go straight into a Kubernetes Event or an HTTP error body.

Accepted names are lower-case ASCII DNS names (letters, digits, ``-``, ``.``) and IP addresses.
Internationalised names must be given in their ``xn--`` form; such a label must be valid
punycode that round-trips (so it cannot hide plain ASCII), must not decode to symbols, and must
not mix letters of several scripts (``xn--pypl-53dc`` = ``pаypаl`` with Cyrillic ``а`` is
refused). Whole-script look-alikes (``xn--80ak6aa92e`` = Cyrillic ``аррӏе``) are not detected:
that needs the Unicode confusables table, and inside a namespace they can only imitate names of
the same namespace.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import unicodedata
from collections.abc import Sequence

__all__ = [
    "DEFAULT_MAXIMUM",
    "DEFAULT_MINIMUM",
    "MAX_NAMES",
    "MAX_NAME_LENGTH",
    "check_duration",
    "check_name_syntax",
    "check_names",
    "format_duration",
    "is_ip_address",
    "parse_duration",
    "parse_extra_allowed",
    "provisioner_id",
    "spiffe_id",
]

DEFAULT_MINIMUM = datetime.timedelta(minutes=5)
DEFAULT_MAXIMUM = datetime.timedelta(days=30)
MAX_NAMES = 20
MAX_NAME_LENGTH = 253  # RFC 1035 2.3.4, without the trailing dot
_MAX_LABEL_LENGTH = 63
_MAX_DURATION_TEXT = 32

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_DNS_CHARS = re.compile(r"[a-z0-9.-]*")
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def parse_duration(text: str) -> datetime.timedelta:
    """Parse ``90m``, ``24h``, ``1h30m``, ``30s`` or ``7d`` (units in the order d, h, m, s).

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


def check_name_syntax(names: Sequence[str]) -> None:
    """Check that ``names`` are at most `MAX_NAMES` well-formed DNS names or IP addresses.

    Raises:
        ValueError: for the first bad name, saying what is wrong with it.
    """
    if not names:
        raise ValueError("at least one name is required")
    if len(names) > MAX_NAMES:
        raise ValueError(f"{len(names)} names requested; at most {MAX_NAMES} are allowed")
    for name in names:
        _check_one(name)


def check_names(
    names: Sequence[str],
    *,
    namespace: str,
    cluster_domain: str = "cluster.local",
    extra_allowed: Sequence[str] = (),
) -> None:
    """Check `check_name_syntax`, then that every DNS name belongs to ``namespace``.

    A pod in namespace ``N`` may have ``x.N``, ``x.N.svc``, ``x.N.svc.<cluster_domain>`` and
    ``x.N.pod.<cluster_domain>`` where ``x`` is one DNS label, IP addresses, and whatever
    ``extra_allowed`` lists: exact names, or ``*.suffix`` for one label in front of ``suffix``.

    Raises:
        ValueError: ``name 'a.other' is not under namespace 'ns'`` and the like.
    """
    check_name_syntax(names)
    _check_namespace(namespace)
    suffixes = (
        f".{namespace}",
        f".{namespace}.svc",
        f".{namespace}.svc.{cluster_domain}",
        f".{namespace}.pod.{cluster_domain}",
    )
    exact = {a for a in extra_allowed if not a.startswith("*.")}
    wild = tuple(a[1:] for a in extra_allowed if a.startswith("*."))
    for name in names:
        if is_ip_address(name) or name in exact:
            continue
        if any(_one_label_before(name, s) for s in suffixes + wild):
            continue
        raise ValueError(f"name '{name}' is not under namespace '{namespace}'")


def parse_extra_allowed(text: str) -> dict[str, tuple[str, ...]]:
    """Read the names an admin allows per namespace: ``{"namespace": ["name", "*.suffix"]}``.

    The CA (``serve --extra-allowed``) and the operator (``HELLO_MTLS_EXTRA_ALLOWED``) read the
    same JSON with this one function; `check_names` applies a namespace's list.

    Raises:
        ValueError: ``extra allowed names must be a JSON object of namespace to a list of names``.
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None
    if not isinstance(document, dict) or not all(
        isinstance(names, list) and all(isinstance(n, str) for n in names)
        for names in document.values()
    ):
        raise ValueError(
            "extra allowed names must be a JSON object of namespace to a list of names"
        )
    return {str(ns): tuple(names) for ns, names in document.items()}


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """The workload's SPIFFE ID, ``spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>``.

    Raises:
        ValueError: if a part is not a valid trust domain, namespace or service account name.
    """
    if not trust_domain or not _DNS_CHARS.fullmatch(trust_domain) or ".." in trust_domain:
        raise ValueError(f"trust domain '{trust_domain}' is not a lower-case DNS name")
    _check_namespace(namespace)
    if (
        not service_account
        or len(service_account) > MAX_NAME_LENGTH
        or not all(_LABEL.fullmatch(label) for label in service_account.split("."))
    ):
        raise ValueError(f"service account '{service_account}' is not a valid name")
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def provisioner_id(trust_domain: str, name: str) -> str:
    """The URI SAN that marks a provisioner credential, allowed to call ``POST /sign``.

    Its path cannot collide with a workload's ``/ns/<ns>/sa/<sa>``.

    Raises:
        ValueError: if ``name`` is not one DNS label.
    """
    if len(name) > _MAX_LABEL_LENGTH or not _LABEL.fullmatch(name):
        raise ValueError(f"provisioner name '{name}' is not a lower-case DNS label")
    spiffe_id(trust_domain, "x", "x")  # validates the trust domain
    return f"spiffe://{trust_domain}/hello-mtls/provisioner/{name}"


def _check_one(name: str) -> None:
    if not isinstance(name, str):
        raise ValueError(f"name {name!r} is not a string")
    if not name:
        raise ValueError("empty name")
    if is_ip_address(name):
        address = ipaddress.ip_address(name)
        if address.is_unspecified or address.is_multicast:
            raise ValueError(f"IP address '{name}' cannot identify a workload")
        return
    shown = name if len(name) <= 64 else name[:60] + "..."
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"name '{shown}' is longer than {MAX_NAME_LENGTH} characters")
    if not name.isascii():
        raise ValueError(f"name '{shown}' is not ASCII; give international names as xn-- labels")
    if "*" in name:
        raise ValueError(f"wildcard name '{shown}' is not allowed")
    if name != name.lower():
        raise ValueError(f"name '{shown}' must be lower case")
    if not _DNS_CHARS.fullmatch(name):
        raise ValueError(f"name '{shown}' may only contain a-z, 0-9, '-' and '.'")
    if name.endswith("."):
        raise ValueError(f"name '{shown}' must not end with a dot")
    labels = name.split(".")
    if labels[-1].isdigit():
        raise ValueError(f"name '{shown}' is neither a DNS name nor an IP address")
    for label in labels:
        if not label:
            raise ValueError(f"name '{shown}' has an empty label")
        if len(label) > _MAX_LABEL_LENGTH:
            raise ValueError(
                f"name '{shown}' has a label longer than {_MAX_LABEL_LENGTH} characters"
            )
        if not _LABEL.fullmatch(label):
            raise ValueError(f"name '{shown}' has a label that starts or ends with '-'")
        if label[2:4] == "--":
            _check_reserved_label(shown, label)


def _check_reserved_label(shown: str, label: str) -> None:
    # RFC 5890 2.3.1: "??--" labels are reserved; only "xn--" (IDNA A-labels) is in use.
    if not label.startswith("xn--"):
        raise ValueError(f"name '{shown}' has a reserved label '{label}'")
    try:
        # The stdlib IDNA 2003 codec checks that the label round-trips, unlike plain punycode;
        # that also refuses an xn-- label that decodes to plain ASCII.
        decoded = label.encode("ascii").decode("idna")
    except UnicodeError:
        raise ValueError(f"name '{shown}' has an invalid punycode label '{label}'") from None
    if not all(c == "-" or unicodedata.category(c)[0] in "LMN" for c in decoded):
        raise ValueError(f"name '{shown}' has a label '{label}' with symbols ('{decoded}')")
    if len(_scripts(decoded)) > 1:
        raise ValueError(f"name '{shown}' mixes scripts in label '{label}' ('{decoded}')")


def _scripts(text: str) -> set[str]:
    # The first word of a letter's Unicode name is its script for the alphabets that phishing
    # mixes (LATIN, CYRILLIC, GREEK, ARMENIAN, ...); CJK is treated as one script.
    scripts = set()
    for char in text:
        if unicodedata.category(char).startswith("L"):
            word = unicodedata.name(char, "UNKNOWN").split()[0]
            scripts.add("CJK" if word in {"CJK", "HIRAGANA", "KATAKANA", "HANGUL"} else word)
    return scripts


def _check_namespace(namespace: str) -> None:
    if len(namespace) > _MAX_LABEL_LENGTH or not _LABEL.fullmatch(namespace):
        raise ValueError(f"namespace '{namespace}' is not a valid namespace name")


def _one_label_before(name: str, suffix: str) -> bool:
    return name.endswith(suffix) and "." not in name[: -len(suffix)] and len(name) > len(suffix)


def is_ip_address(name: str) -> bool:
    """Whether ``name`` is an IPv4 or IPv6 address rather than a DNS name."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
