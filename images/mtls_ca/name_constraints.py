"""An organisation's X.509 name constraints (RFC 5280 4.2.1.10) over the leaves the CA signs.

A signing CA imported from an organisation, or one made under its root, may sit below
certificates that permit or exclude names. A leaf outside them is refused by every verifier, so
the CA refuses to sign it, with the name and the constraint in words, rather than hand out a
certificate that no peer accepts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509

__all__ = ["Constraints"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Constraints:
    """The permitted and excluded subtrees of a chain, one list per name kind.

    Every certificate's constraints apply: a name must be inside a permitted subtree of each
    certificate that permits names of its kind, and inside no excluded subtree of any.
    """

    permitted: tuple[tuple[x509.GeneralName, ...], ...]
    excluded: tuple[x509.GeneralName, ...]

    @classmethod
    def of(cls, chain: Sequence[x509.Certificate]) -> Constraints | None:
        """The constraints of ``chain``; None when no certificate in it has any."""
        permitted: list[tuple[x509.GeneralName, ...]] = []
        excluded: list[x509.GeneralName] = []
        for cert in chain:
            try:
                value = cert.extensions.get_extension_for_class(x509.NameConstraints).value
            except x509.ExtensionNotFound:
                continue
            if value.permitted_subtrees:
                permitted.append(tuple(value.permitted_subtrees))
            excluded += value.excluded_subtrees or []
        if not permitted and not excluded:
            return None
        return cls(tuple(permitted), tuple(excluded))

    def check(self, names: Sequence[str], uris: Sequence[str]) -> None:
        """Refuse a name the constraints do not allow.

        Raises:
            ValueError: naming the first such name and the constraint it breaks.
        """
        for name in (*names, *uris):
            kind, value = _kind(name, name in uris)
            for subtree in self.excluded:
                if isinstance(subtree, kind) and _inside(value, subtree):
                    raise ValueError(
                        f"name '{name}' is excluded by the organisation's name constraints "
                        f"({_show(subtree)})"
                    )
            for subtrees in self.permitted:
                ours = [s for s in subtrees if isinstance(s, kind)]
                if ours and not any(_inside(value, s) for s in ours):
                    raise ValueError(
                        f"name '{name}' is outside the organisation's name constraints "
                        f"(permitted: {', '.join(_show(s) for s in ours)})"
                    )

    def describe(self) -> list[str]:
        """The constraints in words, for ``hello-mtls-ca status``."""
        lines = [
            "permitted: " + ", ".join(_show(s) for s in subtrees) for subtrees in self.permitted
        ]
        if self.excluded:
            lines.append("excluded: " + ", ".join(_show(s) for s in self.excluded))
        return lines


def _kind(name: str, is_uri: bool) -> tuple[type[x509.GeneralName], str | ipaddress._BaseAddress]:
    if is_uri:
        return x509.UniformResourceIdentifier, (urlsplit(name).hostname or "").lower()
    try:
        return x509.IPAddress, ipaddress.ip_address(name)
    except ValueError:
        return x509.DNSName, name.lower().rstrip(".")


def _inside(value: object, subtree: x509.GeneralName) -> bool:
    if isinstance(subtree, x509.IPAddress):
        network = subtree.value
        return isinstance(network, _Network) and value in network
    if isinstance(subtree, x509.DNSName | x509.UniformResourceIdentifier):
        assert isinstance(value, str)
        # RFC 5280: a DNS subtree names a host and everything under it; a leading period (URI,
        # and as OpenSSL reads DNS too) only what is under it.
        base = str(subtree.value).lower()
        if base.startswith("."):
            return value.endswith(base)
        return value == base or value.endswith("." + base)
    return False


def _show(subtree: x509.GeneralName) -> str:
    kinds = {x509.DNSName: "DNS", x509.UniformResourceIdentifier: "URI", x509.IPAddress: "IP"}
    return f"{kinds.get(type(subtree), type(subtree).__name__)}:{subtree.value}"
