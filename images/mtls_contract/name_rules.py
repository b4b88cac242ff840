"""What names the CA agrees to sign: pure functions over DNS names and IP addresses.

Durations are `durations`' and SPIFFE IDs `identities`'.

Shared with the operator, which checks annotations before it asks the CA; the CA checks again.
Every rejection is a ``ValueError`` with a short, exact message
that can go straight into a Kubernetes Event or an HTTP error body.

Accepted names are lower-case ASCII DNS names (letters, digits, ``-``, ``.``) and IP addresses.
Internationalised names must be given in their ``xn--`` form; such a label must be valid
punycode that round-trips (so it cannot hide plain ASCII), must not decode to symbols, and must
not mix letters of several scripts (``xn--pypl-53dc`` = ``pаypаl`` with Cyrillic ``а`` is
refused). Whole-script look-alikes (``xn--80ak6aa92e`` = Cyrillic ``аррӏе``) are not detected:
that needs the Unicode confusables table, and inside a namespace they can only imitate names of
the same namespace.

Internet names: a namespace's names must not be names of the internet. Cluster DNS tries a short
name against ``<ns>.svc.<cluster domain>`` first (``ndots:5``), so ``google.com`` reaches Service
``google`` of namespace ``com``; with a certificate for ``google.com`` that is a working
impersonation. The bare form ``x.N`` stays (clients in other namespaces reach a Service by it, and
the examples use it), and every name the namespace rule grants is refused when it is, or lies
under, a suffix of the Public Suffix List (``publicsuffixlist``, a pure-Python package that ships
the list: no network), ICANN and private sections both (``com``, ``shop``, ``github.io``). Names
under the cluster domain are exempt: the admin chose that domain for the cluster. Names an admin
allows for a namespace (``extra_allowed``) are the admin's decision and are not looked up. The
list grows (new gTLDs): a namespace that becomes one loses its bare names at the next upgrade,
which fails closed.

Reserved top-level domains: the same shadowing works for names on no public list that a
resolver outside the cluster answers, the host's or an organisation's (``localhost``, ``local``
by multicast DNS, ``corp`` on a company network). A granted name whose last label is one of
`RESERVED_TLDS` is refused too, before the public suffix check (the admission policy makes this
check as well, from a copy of the list; the public suffix check it leaves to us). The same
exemptions hold: names under the cluster domain, and whatever ``extra_allowed`` allows.
``home.arpa`` needs no entry: a namespace is one label, so only namespace ``arpa`` could claim
it, and ``arpa`` is a public suffix.

IP addresses: a namespace gets none unless an admin allows networks for it (``allowed_ips``).
Loopback and link-local addresses (``127.0.0.0/8``, ``::1``, ``169.254.0.0/16``, ``fe80::/10``)
reach across every namespace on a node (``169.254.169.254`` is a cloud metadata service), so
they are allowed only by a network that lies wholly inside their range (``127.0.0.1/32``,
``169.254.0.0/16``), never by one that merely contains them (``0.0.0.0/0``). Unspecified and
multicast addresses, IPv4-mapped IPv6 addresses and addresses with a zone index identify no
workload and are never allowed.

Only the standard library and ``publicsuffixlist`` here (the operator imports this module).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence

from publicsuffixlist import PublicSuffixList

__all__ = [
    "CLUSTER_DOMAIN",
    "IPNetwork",
    "MAX_LABEL_LENGTH",
    "MAX_NAMES",
    "MAX_NAME_LENGTH",
    "RESERVED_TLDS",
    "check_name_syntax",
    "check_names",
    "check_namespace",
    "has_dns_characters",
    "ip_allowed",
    "is_ip_address",
    "is_label",
    "parse_allowed_ips",
    "parse_extra_allowed",
    "preload",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

CLUSTER_DOMAIN = "cluster.local"
"""Kubernetes' default cluster DNS domain, and the default SPIFFE trust domain."""
RESERVED_TLDS = (
    *("localhost", "test", "invalid", "example"),  # special-use names, RFC 6761
    "local",  # multicast DNS, RFC 6762
    "alt",  # special-use, for names outside the DNS, RFC 9476
    "internal",  # reserved by ICANN for private use (2024)
    *("corp", "home", "lan", "intranet", "private"),  # private TLDs of companies and routers
)
"""Top-level domains on no public suffix list that resolve outside the cluster all the same: a
namespace named like one gets no bare names ``x.N`` unless an admin allows them. The chart's
names policy holds a copy (variable ``reservedTLDs``); tests/unit/test_name_cases.py compares."""
MAX_NAMES = 20
MAX_NAME_LENGTH = 253  # RFC 1035 2.3.4, without the trailing dot
MAX_LABEL_LENGTH = 63

# ASCII digits only, as the admission policy reads them: \d and int() take any Unicode digit.
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_DNS_CHARS = re.compile(r"[a-z0-9.-]*")
# Addresses every pod of a node shares; only a network wholly inside one of these allows them.
_NAMED_ONLY = tuple(
    ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10")
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
    cluster_domain: str = CLUSTER_DOMAIN,
    extra_allowed: Sequence[str] = (),
    allowed_ips: Sequence[IPNetwork] = (),
) -> None:
    """Check `check_name_syntax`, then that every name belongs to ``namespace``.

    A pod in namespace ``N`` may have ``x.N``, ``x.N.svc``, ``x.N.svc.<cluster_domain>`` and
    ``x.N.pod.<cluster_domain>`` where ``x`` is one DNS label, unless the name is under a
    reserved top-level domain or an internet name (module docstring); whatever
    ``extra_allowed`` lists: exact names, or ``*.suffix`` for one label in front of ``suffix``;
    and IP addresses inside ``allowed_ips`` (loopback and link-local ones only inside a network
    named for them, see `ip_allowed`).

    Raises:
        ValueError: ``name 'a.other' is not under namespace 'ns'``, ``name 'web.corp' is under
            reserved top-level domain 'corp'; a namespace cannot claim it``, ``name 'google.com'
            is an internet name (public suffix 'com'); a namespace cannot claim it``, ``IP
            address '10.96.0.1' is not allowed for namespace 'ns'``.
    """
    check_name_syntax(names)
    check_namespace(namespace)
    suffixes = (
        f".{namespace}",
        f".{namespace}.svc",
        f".{namespace}.svc.{cluster_domain}",
        f".{namespace}.pod.{cluster_domain}",
    )
    exact = {a for a in extra_allowed if not a.startswith("*.")}
    wild = tuple(a[1:] for a in extra_allowed if a.startswith("*."))
    for name in names:
        if is_ip_address(name):
            if not ip_allowed(ipaddress.ip_address(name), allowed_ips):
                raise ValueError(f"IP address '{name}' is not allowed for namespace '{namespace}'")
            continue
        if name in exact or any(_one_label_before(name, s) for s in wild):
            continue
        if not any(_one_label_before(name, s) for s in suffixes):
            raise ValueError(f"name '{name}' is not under namespace '{namespace}'")
        if name.endswith(f".{cluster_domain}"):
            continue  # the admin chose the cluster domain: its names are the cluster's
        top = name.rpartition(".")[2]
        if top in RESERVED_TLDS:
            raise ValueError(
                f"name '{name}' is under reserved top-level domain '{top}'; "
                "a namespace cannot claim it"
            )
        suffix = _public_suffix(name)
        if suffix is not None:
            raise ValueError(
                f"name '{name}' is an internet name (public suffix '{suffix}'); "
                "a namespace cannot claim it"
            )


def ip_allowed(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, allowed: Iterable[IPNetwork]
) -> bool:
    """Whether ``address`` lies in one of the ``allowed`` networks.

    A loopback or link-local address is allowed only by a network that lies wholly inside the
    loopback or link-local range it belongs to: ``127.0.0.1/32`` and ``127.0.0.0/8`` allow
    ``127.0.0.1``; ``0.0.0.0/0`` and ``96.0.0.0/3`` do not.
    """
    shared = next((r for r in _NAMED_ONLY if address in r), None)
    return any(
        address in network and (shared is None or network.subnet_of(shared))  # type: ignore[arg-type]
        for network in allowed
    )


def parse_allowed_ips(text: str) -> dict[str, tuple[IPNetwork, ...]]:
    """Read the networks an admin allows per namespace: ``{"namespace": ["10.1.0.0/16",
    "10.2.0.9", "fd00::/64"]}``, as `parse_extra_allowed` reads names (CA and operator alike).

    An address without a prefix length is that one address (``/32``, ``/128``); a network must
    not have host bits set (``10.1.2.3/16`` is refused: write ``10.1.0.0/16``).

    Raises:
        ValueError: ``allowed IPs must be a JSON object of namespace to a list of CIDRs`` or
            ``allowed IPs of namespace 'shop': 10.1.2.3/16 has host bits set``.
    """
    allowed = {}
    for namespace, cidrs in _lists_by_namespace(text, "allowed IPs", "CIDRs").items():
        try:
            allowed[namespace] = tuple(ipaddress.ip_network(c) for c in cidrs)
        except ValueError as e:
            raise ValueError(f"allowed IPs of namespace '{namespace}': {e}") from None
    return allowed


def parse_extra_allowed(text: str) -> dict[str, tuple[str, ...]]:
    """Read the names an admin allows per namespace: ``{"namespace": ["name", "*.suffix"]}``.

    The CA (``serve --extra-allowed``) and the operator (``HELLO_MTLS_EXTRA_ALLOWED``) read the
    same JSON with this one function; `check_names` applies a namespace's list.

    Raises:
        ValueError: ``extra allowed names must be a JSON object of namespace to a list of names``.
    """
    return _lists_by_namespace(text, "extra allowed names", "names")


def _lists_by_namespace(text: str, what: str, items: str) -> dict[str, tuple[str, ...]]:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, too deep, an integer of too many digits
        document = None
    if not isinstance(document, dict) or not all(
        isinstance(values, list) and all(isinstance(v, str) for v in values)
        for values in document.values()
    ):
        raise ValueError(f"{what} must be a JSON object of namespace to a list of {items}")
    return {str(ns): tuple(values) for ns, values in document.items()}


def _check_one(name: str) -> None:
    if not isinstance(name, str):
        raise ValueError(f"name {name!r} is not a string")
    if not name:
        raise ValueError("empty name")
    if is_ip_address(name):
        address = ipaddress.ip_address(name)
        if (
            address.is_unspecified
            or address.is_multicast
            or (
                isinstance(address, ipaddress.IPv6Address)
                and (address.ipv4_mapped or address.scope_id)
            )
        ):
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
        if len(label) > MAX_LABEL_LENGTH:
            raise ValueError(
                f"name '{shown}' has a label longer than {MAX_LABEL_LENGTH} characters"
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


def check_namespace(namespace: str) -> None:
    """Check that ``namespace`` is a Kubernetes namespace name (one DNS label).

    Raises:
        ValueError: ``namespace 'x' is not a valid namespace name``.
    """
    if len(namespace) > MAX_LABEL_LENGTH or not _LABEL.fullmatch(namespace):
        raise ValueError(f"namespace '{namespace}' is not a valid namespace name")


@functools.cache
def _suffix_list() -> PublicSuffixList:
    return PublicSuffixList()  # parses the list shipped in the package (about 80 ms, once)


def preload() -> None:
    """Parse the public suffix list the rules read now (about 80 ms of CPU), not in the first
    request that needs it: a server calls this before it forks its workers, which then share it."""
    _suffix_list()


def _public_suffix(name: str) -> str | None:
    """The listed public suffix ``name`` is or lies under; None when its TLD is not listed."""
    suffix: str | None = _suffix_list().publicsuffix(name, accept_unknown=False)
    return suffix


def _one_label_before(name: str, suffix: str) -> bool:
    return name.endswith(suffix) and "." not in name[: -len(suffix)] and len(name) > len(suffix)


def is_label(text: str) -> bool:
    """Whether ``text`` is one lower-case DNS label (letters, digits, inner ``-``; any length)."""
    return _LABEL.fullmatch(text) is not None


def has_dns_characters(text: str) -> bool:
    """Whether ``text`` holds only what a lower-case DNS name may: a-z, 0-9, ``-`` and ``.``."""
    return _DNS_CHARS.fullmatch(text) is not None


def is_ip_address(name: str) -> bool:
    """Whether ``name`` is an IPv4 or IPv6 address rather than a DNS name."""
    if ":" not in name and not name[-1:].isdigit():
        return False  # neither IPv6 nor dotted IPv4: most names, without an exception raised
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
