"""The opt-in contract: a pod's ``hello-mtls.dev/*`` annotations read into a `Claim`.

Pure functions only. The name rules and duration bounds are the CA's own
(`mtls_contract.name_rules`), so the operator refuses exactly what the CA would refuse, before it
makes a key.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mtls_contract import durations, identities, name_rules
from mtls_contract.ca_api import SignRequest
from mtls_contract.marks import (
    ANNOTATION_DURATION,
    ANNOTATION_MODE,
    ANNOTATION_NAME,
    ANNOTATION_SANS,
    ANNOTATION_SECRET,
    MODES,
    POD_CERTIFICATE,
    SECRET_MODE,
)

__all__ = [
    "POD_CERTIFICATE_LIFETIMES",
    "Claim",
    "ClaimingPod",
    "Rules",
    "claim_moved",
    "parse_claim",
    "parse_names",
    "secret_of",
]

POD_CERTIFICATE_LIFETIMES = (datetime.timedelta(hours=1), datetime.timedelta(days=91))
"""The shortest and longest lifetime the API allows a pod certificate (a ``podCertificate``
volume's ``maxExpirationSeconds``, and what a signer may issue)."""

# A Secret name is a DNS-1123 subdomain (Kubernetes `IsDNS1123Subdomain`).
_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_SECRET_NAME_MAX = 253

# The white space CEL's trim() strips, so that the admission policies read every annotation as the
# operator does: cel-go's trim() is Go's strings.TrimSpace, the Unicode White_Space property
# (https://github.com/google/cel-go/blob/master/ext/strings.go). str.strip() strips \x1c-\x1f too.
_WHITE_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class Rules:
    """What an administrator allows, from the chart values; the defaults are the CA's."""

    cluster_domain: str = name_rules.CLUSTER_DOMAIN
    default_duration: datetime.timedelta = datetime.timedelta(hours=24)
    minimum: datetime.timedelta = durations.DEFAULT_MINIMUM
    maximum: datetime.timedelta = durations.DEFAULT_MAXIMUM
    extra_allowed: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Namespace to extra names (exact, or ``*.suffix``) its pods may claim."""
    allowed_ips: Mapping[str, Sequence[name_rules.IPNetwork]] = field(default_factory=dict)
    """Namespace to the networks whose addresses its pods may claim (none by default)."""
    pod_certificates: bool = False
    """Whether pods may ask for `POD_CERTIFICATE` mode (the operator runs the signer)."""


@dataclass(frozen=True)
class Claim:
    """One identity a pod asks for: what goes into its certificate and which Secret holds it."""

    namespace: str
    secret: str
    names: tuple[str, ...]
    """The primary DNS name first, then the extra DNS names and IP addresses."""
    duration: datetime.timedelta
    service_account: str
    mode: str = SECRET_MODE

    @property
    def digest(self) -> str:
        """A short fingerprint of everything that goes into the certificate.

        Stored on the Secret, so a changed annotation (or service account) is seen as a changed
        claim even after an operator restart.
        """
        canonical = json.dumps(
            [list(self.names), int(self.duration.total_seconds()), self.service_account]
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def spiffe_id(self, trust_domain: str) -> str:
        """The SPIFFE ID the CA writes into this claim's certificate."""
        return identities.spiffe_id(trust_domain, self.namespace, self.service_account)

    def sign_request(self, csr_pem: bytes) -> SignRequest:
        """The JSON body of ``POST /sign`` for this claim."""
        return {
            "csr": csr_pem.decode(),
            "names": list(self.names),
            "duration": durations.format_duration(self.duration),
            "namespace": self.namespace,
            "service_account": self.service_account,
        }


@dataclass(frozen=True)
class ClaimingPod:
    """An annotated pod and what it claims; ``claim`` is None when its annotations are invalid.
    The inventory keeps these; `decisions.choose_claim` picks among them."""

    namespace: str
    name: str
    uid: str
    created: str
    claim: Claim | None
    certificate_intermediate: str | None = None
    """Pod-certificate mode: the intermediate that signed the certificate it holds, as the signer
    annotated it; "" not known, None holds none (`pod_certificates.certificate_intermediate`)."""
    problem: str = ""
    """Why its annotations are invalid (``claim`` is None), for its ``InvalidAnnotation`` Event."""

    @property
    def ref(self) -> dict[str, Any]:
        """Enough of the pod for an owner reference, an Event or a patch."""
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"namespace": self.namespace, "name": self.name, "uid": self.uid},
        }


def parse_claim(
    annotations: Mapping[str, str],
    *,
    namespace: str,
    service_account: str,
    rules: Rules,
) -> Claim:
    """Read a pod's annotations into a `Claim`, checking every name, the duration and the mode.

    `POD_CERTIFICATE` mode needs ``rules.pod_certificates`` and a duration within
    `POD_CERTIFICATE_LIFETIMES`.

    Args:
        annotations: the pod's annotations; `ANNOTATION_NAME` must be among them.
        namespace: the pod's namespace; names must lie under it (or be allowed by ``rules``).
        service_account: the pod's service account (``default`` when the pod names none).
        rules: the administrator's allowances.

    Raises:
        ValueError: with a message fit for a Kubernetes Event, e.g.
            ``hello-mtls.dev/name: name 'db.other' is not under namespace 'shop'``.
    """
    names = parse_names(annotations, namespace=namespace, rules=rules)
    name = names[0]
    duration = rules.default_duration
    if ANNOTATION_DURATION in annotations:
        duration = _check(
            ANNOTATION_DURATION, durations.parse_duration, _trim(annotations[ANNOTATION_DURATION])
        )
    _check(
        ANNOTATION_DURATION,
        lambda d: durations.check_duration(d, minimum=rules.minimum, maximum=rules.maximum),
        duration,
    )

    secret = _trim(annotations.get(ANNOTATION_SECRET, "")) or _default_secret(name)
    if len(secret) > _SECRET_NAME_MAX or not _SECRET_NAME.fullmatch(secret):
        raise ValueError(f"{ANNOTATION_SECRET}: '{secret}' is not a valid Secret name")

    mode = _trim(annotations.get(ANNOTATION_MODE, "")) or SECRET_MODE
    if mode not in MODES:
        raise ValueError(f"{ANNOTATION_MODE}: '{mode}' is not a mode; use {' or '.join(MODES)}")
    if mode == POD_CERTIFICATE:
        _check_pod_certificate(duration, rules)

    return Claim(
        namespace=namespace,
        secret=secret,
        names=names,
        duration=duration,
        service_account=service_account or "default",
        mode=mode,
    )


def claim_moved(before: Claim, after: Claim) -> str | None:
    """Why a pod that exists with claim ``before`` may not change to claim ``after``; None if it
    may.

    A pod's volumes are fixed when it is created: the kubelet keeps mounting the Secret (or the
    pod-certificate volume) it was created with, whatever its annotations say later. A claim
    that moved to another Secret or mode would leave the mounted one unrenewed until it expires.
    The admission policy hello-mtls-names refuses such an update with this message (one table of
    cases for both: tests/support/claim_moves.py); the operator posts it as an Event if it sees
    one anyway.
    """
    advice = "; change the pod template of its workload (or recreate the pod) instead"
    if before.mode != after.mode:
        return (
            f"{ANNOTATION_MODE}: a pod created in {before.mode} mode cannot move to"
            f" {after.mode} mode: the kubelet keeps the volumes it was created with{advice}"
        )
    if before.mode == SECRET_MODE and before.secret != after.secret:
        derived = before.secret == _default_secret(before.names[0]) and after.secret == (
            _default_secret(after.names[0])
        )
        return (
            f"{ANNOTATION_NAME if derived else ANNOTATION_SECRET}: a pod cannot move from Secret"
            f" '{before.secret}' to '{after.secret}': the kubelet keeps mounting"
            f" '{before.secret}', which would no longer be renewed{advice}"
        )
    return None


def parse_names(annotations: Mapping[str, str], *, namespace: str, rules: Rules) -> tuple[str, ...]:
    """The names `ANNOTATION_NAME` and `ANNOTATION_SANS` ask for, primary first, each checked
    against the name rules.


    Raises:
        ValueError: as `parse_claim` does, naming the annotation.
    """
    name = _trim(annotations.get(ANNOTATION_NAME, ""))
    _check(ANNOTATION_NAME, name_rules.check_name_syntax, [name])
    if name_rules.is_ip_address(name):
        raise ValueError(
            f"{ANNOTATION_NAME}: '{name}' is an IP address; the name must be a DNS name"
        )

    def check(names: Sequence[str]) -> None:
        name_rules.check_names(
            names,
            namespace=namespace,
            cluster_domain=rules.cluster_domain,
            extra_allowed=rules.extra_allowed.get(namespace, ()),
            allowed_ips=rules.allowed_ips.get(namespace, ()),
        )

    _check(ANNOTATION_NAME, check, [name])

    sans_text = _trim(annotations.get(ANNOTATION_SANS, ""))
    sans = [_trim(s) for s in sans_text.split(",")] if sans_text else []
    names = tuple(dict.fromkeys([name, *sans]))
    _check(ANNOTATION_SANS, check, names)
    return names


def _check_pod_certificate(duration: datetime.timedelta, rules: Rules) -> None:
    """The chart must run the signer, and the API must accept the lifetime as a volume's
    ``maxExpirationSeconds`` (the admission policy hello-mtls-names says the same)."""
    if not rules.pod_certificates:
        raise ValueError(
            f"{ANNOTATION_MODE}: {POD_CERTIFICATE} is not enabled in this installation"
            f" (chart value podCertificates.enabled); use {SECRET_MODE}"
        )
    shortest, longest = POD_CERTIFICATE_LIFETIMES
    if not shortest <= duration <= longest:
        raise ValueError(
            f"{ANNOTATION_DURATION}: duration {durations.format_duration(duration)} is outside the"
            f" {durations.format_duration(shortest)} to {durations.format_duration(longest)}"
            " a pod certificate may live"
        )


def secret_of(annotations: Mapping[str, str]) -> str:
    """The Secret a secret-mode pod's annotations name, read as `parse_claim` reads it but
    without judging the names (for tools that show claims, valid or not)."""
    return _trim(annotations.get(ANNOTATION_SECRET, "")) or _default_secret(
        _trim(annotations.get(ANNOTATION_NAME, ""))
    )


def _default_secret(name: str) -> str:
    """The Secret of a claim without `ANNOTATION_SECRET`: the first label of its name, then
    ``-tls``."""
    return f"{name.split('.')[0]}-tls"


def _trim(value: str) -> str:
    return value.strip(_WHITE_SPACE)


def _check(annotation: str, check: Callable[[_T], _R], value: _T) -> _R:
    try:
        return check(value)
    except ValueError as error:
        raise ValueError(f"{annotation}: {error}") from None
