"""``hello-mtls-ca inspect``: what a certificate, a certificate directory or a server presents,
whether it verifies against a trust bundle, and if not, why, in words; and whether the CA's CRL
(a directory's ``ca.crl``, or ``--crl``) lists it.

The checks that name a cause (expired, not yet valid, an issuer nobody holds, a missing
intermediate, a signature that does not verify, a name the certificate does not carry) run
first, each on its own; then cryptography's RFC 5280 path validation has the last word, so a
chain this module finds no fault with still fails when the path validation does.

What a server negotiated (version, suite, key-exchange group) and whether it asked for a client
certificate come from the handshake itself: the standard library shows the first two; the group
and the certificate request are read from the handshake messages (`_HandshakeWatch`).
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import socket
import ssl
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store

from mtls_context import layout
from mtls_contract import name_rules

from . import revocation

__all__ = [
    "Chain",
    "Report",
    "TLSFacts",
    "describe",
    "fetch",
    "inspect",
    "load",
    "parse_certificates",
    "parse_target",
    "read_bundle",
    "render",
]

UTC = datetime.UTC
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[^:\[\]/]+)):(?P<port>\d{1,5})$")
_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
}
# TLS NamedGroup code points (IANA "TLS Supported Groups").
_GROUPS = {
    0x0017: "secp256r1",
    0x0018: "secp384r1",
    0x0019: "secp521r1",
    0x001D: "x25519",
    0x001E: "x448",
    0x0100: "ffdhe2048",
    0x0101: "ffdhe3072",
    0x11EC: "X25519MLKEM768",
    0x11EB: "SecP256r1MLKEM768",
}


@dataclass
class TLSFacts:
    """What a server negotiated with this client."""

    version: str
    cipher: str
    group: str | None
    """The key-exchange group; None if the handshake did not show it."""
    asked_for_client_certificate: bool | None
    """None if the handshake messages could not be watched."""


@dataclass
class Chain:
    """The certificates a target presents (leaf first) and the trust bundle it comes with."""

    certificates: list[x509.Certificate]
    bundle: Path | None = None
    """A certificate directory's own ``ca.crt``; None for a file or a server."""
    tls: TLSFacts | None = None
    crl: Path | None = None
    """A certificate directory's own ``ca.crl``; None if it has none, a file or a server."""


@dataclass
class Report:
    """What `inspect` found; `problems` is empty when the chain verifies."""

    target: str
    certificates: list[dict[str, Any]]
    bundle: str | None
    verified: bool | None
    """None: nothing to verify against (no bundle)."""
    problems: list[str] = field(default_factory=list)
    policy: str | None = None
    """With a namespace: whether the names pass its policy, in words."""
    tls: dict[str, Any] | None = None
    revocation: str | None = None
    """With a CRL: whether it lists the leaf, in words (None: no CRL given)."""


def parse_target(text: str) -> tuple[str, int] | None:
    """``(host, port)`` for ``HOST:PORT`` or ``[V6]:PORT``; None for anything else (a path)."""
    found = _HOST_PORT.match(text)
    if found is None or Path(text).exists():
        return None
    port = int(found["port"])
    if not 0 < port < 65536:
        raise ValueError(f"'{text}': port {port} is not between 1 and 65535")
    return (found["v6"] or found["host"]), port


def load(path: Path) -> Chain:
    """The chain in a PEM file, or a certificate directory's ``tls.crt`` with its ``ca.crt``."""
    if path.is_dir():
        cert, bundle, crl = path / layout.CERT, path / layout.CA, path / layout.CRL
        if not cert.is_file():
            raise ValueError(f"{path} is not a certificate directory: it has no {layout.CERT}")
        return Chain(
            _read_pem(cert),
            bundle if bundle.is_file() else None,
            crl=crl if crl.is_file() else None,
        )
    if not path.is_file():
        raise ValueError(f"{path}: no such file, directory or HOST:PORT")
    return Chain(_read_pem(path))


def read_bundle(path: Path) -> list[x509.Certificate]:
    """The certificates of a trust bundle (PEM)."""
    return _read_pem(path)


def fetch(host: str, port: int, *, timeout: float = 10.0, credential: Path | None = None) -> Chain:
    """The chain ``host:port`` presents and what it negotiated; with ``credential`` (a
    certificate directory) this client presents that directory's certificate.

    Nothing is verified during the handshake: the chain is fetched as it is and judged by
    `inspect`, which says what is wrong with it instead of failing the handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if credential is not None:
        context.load_cert_chain(credential / layout.CERT, credential / layout.KEY)
    watch = _HandshakeWatch(context)
    server_name = None if name_rules.is_ip_address(host) else host
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            version, cipher = tls.version() or "?", (tls.cipher() or ("?",))[0]
            # Public as SSLSocket.get_unverified_chain from Python 3.13; the same method of the
            # underlying _ssl object before (3.10 to 3.12).
            chain = tls._sslobj.get_unverified_chain() or []  # type: ignore[attr-defined]
            ders = [c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain]  # type: ignore[attr-defined]
    except ssl.SSLError as e:
        raise ValueError(f"TLS handshake with {host}:{port} failed: {e.reason or e}") from None
    except OSError as e:
        raise ValueError(f"cannot connect to {host}:{port}: {e.strerror or e}") from None
    facts = TLSFacts(version, cipher, watch.group, watch.asked_for_certificate)
    return Chain([x509.load_der_x509_certificate(d) for d in ders], tls=facts)


def describe(cert: x509.Certificate, now: datetime.datetime) -> dict[str, Any]:
    """The fields of ``cert`` that matter, as JSON-ready values."""
    sans = _sans(cert)
    uris = sans.get_values_for_type(x509.UniformResourceIdentifier) if sans else []
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = basic.ca
    except x509.ExtensionNotFound:
        is_ca = False
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "ca": is_ca,
        "dns_names": sans.get_values_for_type(x509.DNSName) if sans else [],
        "ip_addresses": [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
        if sans
        else [],
        "uris": uris,
        "spiffe_id": next((u for u in uris if u.startswith("spiffe://")), None),
        "key": _key_kind(cert.public_key()),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "time_left": _time_left(cert.not_valid_after_utc - now),
        "key_usage": _key_usage(cert),
        "extended_key_usage": _extended_key_usage(cert),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
    }


def inspect(
    target: str,
    chain: Chain,
    *,
    roots: Sequence[x509.Certificate] | None,
    bundle: Path | None,
    now: datetime.datetime,
    name: str | None = None,
    namespace: str | None = None,
    cluster_domain: str = name_rules.CLUSTER_DOMAIN,
    crl: bytes | None = None,
) -> Report:
    """Judge ``chain`` against ``roots`` (read from ``bundle``; None: not verified) at ``now``;
    ``name``: a DNS name or IP the leaf must carry; ``namespace``: check the leaf's names
    against that namespace's name policy; ``crl``: the CA's CRLs (PEM), a leaf they list is a
    problem."""
    if not chain.certificates:
        raise ValueError(f"{target} presents no certificate")
    leaf = chain.certificates[0]
    report = Report(
        target=target,
        certificates=[describe(c, now) for c in chain.certificates],
        bundle=str(bundle) if bundle else None,
        verified=None,
        tls=vars(chain.tls) if chain.tls else None,
    )
    report.problems += _validity(chain.certificates, now)
    if name is not None:
        report.problems += _name_mismatch(leaf, name)
    if roots is not None:
        report.problems += _path_problems(chain.certificates, roots, bundle)
        if not report.problems:
            report.problems += _path_validation(chain.certificates, roots, now, name)
        report.verified = not report.problems
    if namespace is not None:
        report.policy = _policy(leaf, namespace, cluster_domain)
    if crl is not None:
        report.revocation, revoked = _revocation(chain.certificates, crl, now)
        if revoked:
            report.problems.append(report.revocation)
            report.verified = False
    return report


def render(report: Report) -> str:
    """``report`` for a person to read."""
    lines = [f"{report.target}:"]
    for n, cert in enumerate(report.certificates):
        role = "leaf" if n == 0 else ("CA" if cert["ca"] else "certificate")
        lines.append(f"  [{n}] {role}: {cert['subject'] or '(empty subject)'}")
        lines.append(f"      issuer      {cert['issuer']}")
        lines.append(f"      serial      {cert['serial']}")
        uris = [u for u in cert["uris"] if u != cert["spiffe_id"]]
        for values, label in (
            (cert["dns_names"], "DNS"),
            (cert["ip_addresses"], "IP"),
            (uris, "URI"),
        ):
            if values:
                lines.append(f"      {label:<11} {', '.join(values)}")
        if cert["spiffe_id"]:
            lines.append(f"      SPIFFE ID   {cert['spiffe_id']}")
        lines.append(f"      key         {cert['key']}")
        lines.append(f"      valid       {cert['not_before']} to {cert['not_after']}")
        lines.append(f"      time left   {cert['time_left']}")
        lines.append(f"      key usage   {', '.join(cert['key_usage']) or '-'}")
        if cert["extended_key_usage"]:
            lines.append(f"      ext. usage  {', '.join(cert['extended_key_usage'])}")
        lines.append(f"      sha256      {cert['sha256']}")
    if report.tls:
        tls = report.tls
        asked = {True: "yes", False: "no", None: "unknown"}[tls["asked_for_client_certificate"]]
        lines.append(f"  TLS: {tls['version']}, {tls['cipher']}, group {tls['group'] or '?'}")
        lines.append(f"  asked for a client certificate: {asked}")
    if report.verified is None:
        lines.append("  verified: not checked (no trust bundle: give --ca)")
    else:
        lines.append(f"  verified: {'yes' if report.verified else 'NO'}, against {report.bundle}")
    lines += [f"  ✗ {problem}" for problem in report.problems]
    if report.revocation is not None and report.revocation not in report.problems:
        lines.append(f"  revocation: {report.revocation}")
    if report.policy is not None:
        lines.append(f"  policy: {report.policy}")
    return "\n".join(lines)


def _revocation(
    certificates: Sequence[x509.Certificate], crl_pem: bytes, now: datetime.datetime
) -> tuple[str, bool]:
    """Whether the CRL of the leaf's issuer lists the leaf, in words; True if it does."""
    leaf = certificates[0]
    try:
        crls = revocation.load_crls(crl_pem)
    except ValueError:
        return "unknown: the CRL file does not parse (it must be PEM X509 CRLs)", False
    crl = next((c for c in crls if c.issuer == leaf.issuer), None)
    if crl is None:
        return (
            f"unknown: the CRL holds no CRL of {leaf.issuer.rfc4514_string()} (an old CRL, or "
            "another CA's: fetch GET /crl again)",
            False,
        )
    issuer = next((c for c in certificates[1:] if c.subject == leaf.issuer), None)
    if issuer is not None and not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
        return "unknown: the CRL's signature does not verify with the leaf's issuer", False
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    entry = crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
    if entry is not None:
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reason = "unspecified"
        return (
            f"REVOKED on {_when(entry.revocation_date_utc)} ({reason}; CRL number {number}): "
            "servers that hold this CRL refuse it; the operator issues a new key and certificate",
            True,
        )
    next_update = crl.next_update_utc
    stale = next_update is not None and next_update <= now
    if stale:
        assert next_update is not None
        return (
            f"not listed, but the CRL is stale (nextUpdate {_when(next_update)}; CRL number "
            f"{number}): check that the CA is up and the operator copies GET /crl",
            False,
        )
    until = f", next update {_when(next_update)}" if next_update is not None else ""
    return f"not revoked (CRL number {number}{until})", False


def _read_pem(path: Path) -> list[x509.Certificate]:
    return parse_certificates(path.read_bytes(), str(path))


def parse_certificates(data: bytes, source: str) -> list[x509.Certificate]:
    """The certificates of PEM or DER ``data`` (``source`` names it in errors)."""
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except x509.InvalidVersion as e:
        raise ValueError(f"{source} holds a certificate of no known version ({e})") from None
    except ValueError:
        try:
            return [x509.load_der_x509_certificate(data)]
        except (ValueError, x509.InvalidVersion):
            raise ValueError(f"{source} holds no PEM or DER certificate") from None
    return certificates


def _validity(certificates: Sequence[x509.Certificate], now: datetime.datetime) -> list[str]:
    problems = []
    for cert in certificates:
        who = _who(cert)
        if now > cert.not_valid_after_utc:
            problems.append(
                f"{who} expired on {_when(cert.not_valid_after_utc)}"
                f" ({_time_left(now - cert.not_valid_after_utc)} ago): the process serves a"
                " certificate it did not renew or did not reload; check its certificate"
                " directory (or Secret) and that it reloads it"
            )
        elif now < cert.not_valid_before_utc:
            problems.append(
                f"{who} is not valid until {_when(cert.not_valid_before_utc)}: check this"
                " machine's clock and the CA's"
            )
    return problems


def _path_problems(
    certificates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    bundle: Path | None,
) -> list[str]:
    """Walk from the leaf up through what was presented, then the bundle; name what breaks."""
    where = f"the trust bundle {bundle}" if bundle else "the trust bundle"
    presented = list(certificates[1:])
    cert = certificates[0]
    while True:
        root = _issuer_in(cert, roots)
        if root is not None:
            return _signature(cert, root)
        parent = _issuer_in(cert, presented)
        if parent is not None:
            problems = _signature(cert, parent)
            if problems:
                return problems
            presented.remove(parent)  # the walk ends: each step uses one up
            cert = parent
            continue
        issuer = cert.issuer.rfc4514_string()
        if len(certificates) == 1:
            return [
                f"incomplete chain: {_who(cert)} was issued by '{issuer}', which was not"
                f" presented and is not in {where}: a server must present its certificate with"
                f" the intermediate ({layout.CERT} holds both); if it does, the bundle is not"
                " the one that CA chains to"
            ]
        return [
            f"certificate signed by unknown authority: no certificate in {where} issued"
            f" {_who(cert)} (issuer '{issuer}'); check that the bundle is this cluster's trust"
            f" bundle ({layout.CA}), and during a root rotation that it holds both roots"
        ]


def _issuer_in(
    cert: x509.Certificate, candidates: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    """The candidate that issued ``cert``: by name, preferring one whose key verifies it."""
    named = [c for c in candidates if c.subject == cert.issuer and c != cert]
    for candidate in named:
        if not _signature(cert, candidate):
            return candidate
    return named[0] if named else None


def _signature(cert: x509.Certificate, issuer: x509.Certificate) -> list[str]:
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return [
            f"{_who(cert)} names '{issuer.subject.rfc4514_string()}' as its issuer, but its"
            " signature does not verify with that certificate's key: it was signed by another"
            " CA of the same name (an older root?); check which root the bundle holds"
        ]
    return []


def _path_validation(
    certificates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: datetime.datetime,
    name: str | None,
) -> list[str]:
    leaf, intermediates = certificates[0], list(certificates[1:])
    builder = PolicyBuilder().store(Store(list(roots))).time(now)
    subject = name or next(iter(_names(leaf)), None)
    try:
        if subject is not None and ExtendedKeyUsageOID.SERVER_AUTH in _eku_oids(leaf):
            general: x509.DNSName | x509.IPAddress = (
                x509.IPAddress(ipaddress.ip_address(subject))
                if name_rules.is_ip_address(subject)
                else x509.DNSName(subject)
            )
            builder.build_server_verifier(general).verify(leaf, intermediates)
        else:
            builder.build_client_verifier().verify(leaf, intermediates)
    except Exception as e:  # VerificationError, or ValueError for a name it cannot take
        return [f"RFC 5280 path validation failed: {e}"]
    return []


def _name_mismatch(leaf: x509.Certificate, name: str) -> list[str]:
    names = _names(leaf)
    wanted = (
        str(ipaddress.ip_address(name))
        if name_rules.is_ip_address(name)
        else name.lower().rstrip(".")
    )
    if wanted in {n.lower() for n in names}:
        return []
    carried = ", ".join(names) or "no DNS name or IP address"
    return [f"the certificate is not valid for '{name}': it names {carried}"]


def _policy(leaf: x509.Certificate, namespace: str, cluster_domain: str) -> str:
    names = _names(leaf)
    if not names:
        return f"the certificate names nothing for namespace '{namespace}' to claim"
    try:
        name_rules.check_names(names, namespace=namespace, cluster_domain=cluster_domain)
    except ValueError as e:
        return f"FAILS for namespace '{namespace}': {e}"
    sans = _sans(leaf)
    for uri in sans.get_values_for_type(x509.UniformResourceIdentifier) if sans else []:
        if uri.startswith("spiffe://") and f"/ns/{namespace}/" not in uri:
            return f"FAILS for namespace '{namespace}': SPIFFE ID {uri} is another namespace's"
    return f"passes for namespace '{namespace}' (cluster domain {cluster_domain})"


def _names(cert: x509.Certificate) -> list[str]:
    sans = _sans(cert)
    if sans is None:
        return []
    ips = [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    return [*sans.get_values_for_type(x509.DNSName), *ips]


def _sans(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def _eku_oids(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return []


def _extended_key_usage(cert: x509.Certificate) -> list[str]:
    return [_EKU_NAMES.get(oid, oid.dotted_string) for oid in _eku_oids(cert)]


def _key_usage(cert: x509.Certificate) -> list[str]:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return []
    names = [
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
    ]
    found = [n for n in names if getattr(usage, n)]
    if usage.key_agreement:
        found += [n for n in ("encipher_only", "decipher_only") if getattr(usage, n)]
    return found


def _key_kind(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "EC P-256", "secp384r1": "EC P-384", "secp521r1": "EC P-521"}.get(
            key.curve.name, f"EC {key.curve.name}"
        )
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}"
    return type(key).__name__


def _time_left(delta: datetime.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "expired"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds}s"


def _when(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _who(cert: x509.Certificate) -> str:
    subject = cert.subject.rfc4514_string()
    names = _names(cert)
    return f"'{subject}'" if subject else f"the certificate for {', '.join(names) or '(no name)'}"


class _HandshakeWatch:
    """The key-exchange group and whether the server sent a CertificateRequest, read from the
    handshake messages as OpenSSL processes them (the standard library's message callback,
    ``SSLContext._msg_callback``: not public API, so when it is missing both stay unknown)."""

    _HANDSHAKE = 22
    _SERVER_HELLO, _SERVER_KEY_EXCHANGE, _CERTIFICATE_REQUEST = 2, 12, 13

    def __init__(self, context: ssl.SSLContext) -> None:
        self.group: str | None = None
        self.asked_for_certificate: bool | None = None
        if hasattr(context, "_msg_callback"):
            self.asked_for_certificate = False
            context._msg_callback = self._message

    def _message(
        self, _conn: Any, direction: str, _version: Any, content: Any, kind: Any, data: bytes
    ) -> None:
        if direction != "read" or content != self._HANDSHAKE:
            return
        if kind == self._CERTIFICATE_REQUEST:
            self.asked_for_certificate = True
        elif kind == self._SERVER_HELLO:
            self.group = self.group or _key_share_group(data)
        elif kind == self._SERVER_KEY_EXCHANGE and len(data) >= 7 and data[4] == 3:
            self.group = _GROUPS.get(struct.unpack("!H", data[5:7])[0])  # TLS 1.2 named curve


def _key_share_group(hello: bytes) -> str | None:
    """The group of a TLS 1.3 ServerHello's key_share extension (type 51); None if absent."""
    try:
        at = 4 + 2 + 32  # message header, legacy version, random
        at += 1 + hello[at]  # legacy session id
        at += 2 + 1  # cipher suite, compression method
        (end,) = struct.unpack("!H", hello[at : at + 2])
        at, end = at + 2, at + 2 + end
        while at + 4 <= end:
            kind, size = struct.unpack("!HH", hello[at : at + 4])
            if kind == 51 and size >= 2:
                (code,) = struct.unpack("!H", hello[at + 4 : at + 6])
                return _GROUPS.get(code, f"0x{code:04x}")
            at += 4 + size
    except (IndexError, struct.error):
        return None
    return None
