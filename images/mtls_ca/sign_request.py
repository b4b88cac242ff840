"""``POST /sign`` without the web framework: parse the request, apply the name rules, sign.

The key to certify comes in a PKCS#10 CSR (``csr``, its signature checked: the operator's own, or
a kubelet's stub request) or bare (``public_key``, a PKIX SubjectPublicKeyInfo: a kubelet's
``pkixPublicKey``, whose proof of possession the API server checked).

Errors are ``ValueError`` subclasses whose message goes to the caller as is: `Malformed` (HTTP
400: bad JSON shape, bad CSR or public key, unknown key type, bad duration syntax) and
`RuleViolation` (HTTP 403: names or duration the name rules refuse).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mtls_contract import durations, identities, name_rules

from . import revocation
from .authority import Issued, load_csr_public_key, load_public_key, public_key_sha256
from .state import State

__all__ = [
    "DEFAULT_DURATION",
    "Malformed",
    "RuleViolation",
    "SignRequest",
    "answer",
    "answer_json",
    "encode",
    "parse",
    "sign",
]

DEFAULT_DURATION = datetime.timedelta(hours=24)
# No "extra_allowed": admin allowances come from the CA's own configuration, never from a caller.
_FIELDS = {"csr", "public_key", "names", "duration", "namespace", "service_account"}
_PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class Malformed(ValueError):
    """The request cannot be understood (HTTP 400)."""


class RuleViolation(ValueError):
    """The request is understood, and the name rules refuse it (HTTP 403)."""


@dataclass(frozen=True)
class SignRequest:
    """A parsed ``POST /sign`` body."""

    public_key: _PublicKey
    """The key to certify: a CSR's (its signature checked) or the bare ``public_key``."""
    names: tuple[str, ...]
    duration: datetime.timedelta = DEFAULT_DURATION
    namespace: str | None = None
    service_account: str | None = None

    @cached_property
    def key_sha256(self) -> str:
        """`mtls_ca.authority.public_key_sha256` of the key: how revocation and the audit trail
        name it."""
        return public_key_sha256(self.public_key)


def parse(body: Any) -> SignRequest:
    """Check the shape of a decoded JSON body and load its CSR.

    Raises:
        Malformed: with what is wrong, e.g. ``'names' must be a list of strings``.
    """
    if not isinstance(body, Mapping):
        raise Malformed("request body must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise Malformed(f"unknown field(s): {', '.join(unknown)}")
    csr_pem, key_pem = body.get("csr"), body.get("public_key")
    if (csr_pem is None) == (key_pem is None):
        raise Malformed("give exactly one of 'csr' and 'public_key'")
    for key, value in (("csr", csr_pem), ("public_key", key_pem)):
        if value is not None and not isinstance(value, str):
            raise Malformed(f"'{key}' must be a PEM string")
    names = _strings(body, "names")
    namespace, account = body.get("namespace"), body.get("service_account")
    for key, value in (("namespace", namespace), ("service_account", account)):
        if value is not None and not isinstance(value, str):
            raise Malformed(f"'{key}' must be a string")
    if account is not None and namespace is None:
        raise Malformed("'service_account' needs 'namespace'")
    duration = DEFAULT_DURATION
    if "duration" in body:
        if not isinstance(body["duration"], str):
            raise Malformed("'duration' must be a string like 24h")
        try:
            duration = durations.parse_duration(body["duration"])
        except ValueError as e:
            raise Malformed(str(e)) from None
    try:
        if isinstance(csr_pem, str):
            public_key = load_csr_public_key(csr_pem.encode("utf-8", errors="replace"))
        else:
            public_key = load_public_key(str(key_pem).encode("utf-8", errors="replace"))
    except ValueError as e:
        raise Malformed(str(e)) from None
    assert isinstance(public_key, _PublicKey)  # load_csr checked the type
    return SignRequest(public_key, names, duration, namespace, account)


def sign(
    state: State,
    request: SignRequest,
    *,
    role: str,
    cluster_domain: str = name_rules.CLUSTER_DOMAIN,
    extra_allowed: Mapping[str, Sequence[str]] | None = None,
    allowed_ips: Mapping[str, Sequence[name_rules.IPNetwork]] | None = None,
) -> Issued:
    """Apply the name rules to ``request`` and sign it with the current intermediate.

    A namespace brings the namespace name rule and the SPIFFE ID (service account ``default``
    unless given). A provisioner (``role``, the operator's credential) must name one; only an
    admin may leave it out, and then only the name syntax rules apply. What an admin allowed a
    namespace beyond its own names comes from the CA's configuration alone: ``extra_allowed``
    (names) and ``allowed_ips`` (networks), both keyed by namespace.

    Raises:
        RuleViolation: with the rule's exact message, or if the key's certificate was revoked.
        Malformed: if the namespace is missing or it or the service account is not a valid name.
    """
    if request.namespace is None and role != identities.ADMIN:
        raise Malformed("'namespace' is required with a provisioner credential")
    try:
        revocation.check_key(state, request.key_sha256)
        durations.check_duration(request.duration, minimum=state.minimum, maximum=state.maximum)
        if request.namespace is None:
            name_rules.check_name_syntax(request.names)
        else:
            name_rules.check_names(
                request.names,
                namespace=request.namespace,
                cluster_domain=cluster_domain,
                extra_allowed=(extra_allowed or {}).get(request.namespace, ()),
                allowed_ips=(allowed_ips or {}).get(request.namespace, ()),
            )
    except ValueError as e:
        raise RuleViolation(str(e)) from None
    uris = []
    if request.namespace is not None:
        try:
            uri = identities.spiffe_id(
                state.trust_domain, request.namespace, request.service_account or "default"
            )
        except ValueError as e:
            raise Malformed(str(e)) from None
        uris.append(uri)
    return state.signer.sign_public_key(
        request.public_key, *request.names, uris=uris, valid_for=request.duration
    )


def answer(state: State, issued: Issued) -> dict[str, Any]:
    """The JSON body of a successful ``POST /sign``."""
    return _answer(
        state,
        certificate=issued.chain_pem.decode(),
        serial=f"{issued.serial:x}",
        not_after=_time(issued.not_after),
    )


def answer_json(state: State, issued: Issued) -> bytes:
    """`encode` (`answer`).

    The members that come from the state (the roots, the CRLs, the TLS policy: most of the
    bytes) are encoded once per state, the leaf's three per answer: encoding the whole answer
    took 0.03 ms of a signature's 1.4 (py-spy under bench-ca).
    """
    cached = _encoded
    head, *tails = cached[1] if cached is not None and cached[0] is state else _encode(state)
    leaf = (issued.chain_pem.decode(), _time(issued.not_after), f"{issued.serial:x}")
    return head + b"".join(_dumps(value) + tail for value, tail in zip(leaf, tails, strict=True))


def _answer(state: State, *, certificate: str, not_after: str, serial: str) -> dict[str, Any]:
    return {
        "certificate": certificate,
        "ca": state.bundle_pem.decode(),
        "tls_policy": state.tls_policy,
        "serial": serial,
        "not_after": not_after,
        "bundle_sha256": state.bundle_sha256,
        "intermediate_sha256": state.signer.intermediate_sha256,
        "crl": state.crl_pem.decode(),
    }


_SLOTS = {"certificate": "\0certificate\0", "not_after": "\0not_after\0", "serial": "\0serial\0"}
"""Stand-ins of the leaf's members in `_encode`'s template, in the order of their keys (the
order of the sorted JSON); no PEM, hex or time holds a NUL."""
_encoded: tuple[State, list[bytes]] | None = None
"""The last state `_encode`d, and its template cut at the leaf's members."""


def _encode(state: State) -> list[bytes]:
    """The JSON of `answer` cut where the leaf's members go (the template of `answer_json`).

    Raises:
        ValueError: if a stand-in is not where it belongs (a bug).
    """
    global _encoded
    rest = encode(_answer(state, **_SLOTS))
    parts = []
    for slot in _SLOTS.values():
        before, found, rest = rest.partition(_dumps(slot))
        if not found:
            raise ValueError(f"no {slot!r} in the answer's template")
        parts.append(before)
    parts.append(rest)
    _encoded = (state, parts)  # threads may race here: each makes the same
    return parts


def encode(document: Any) -> bytes:
    """``document`` as the bytes Flask's ``jsonify`` makes of it outside debug mode."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def _dumps(value: str) -> bytes:
    return json.dumps(value).encode()


def _time(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _strings(body: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = body.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Malformed(f"'{key}' must be a list of strings")
    return tuple(value)
