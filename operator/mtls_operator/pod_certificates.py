"""The pod-certificate signer: PodCertificateRequests for our signer name, answered with the CA.

In ``pod-certificate`` mode (`claims.POD_CERTIFICATE`) the kubelet makes the pod's key in memory
and asks for a certificate with a PodCertificateRequest (``certificates.k8s.io/v1``, "PCR"); the
key never leaves the node. The signer answers only requests from namespaces the installation
serves (`scope.Scope`) for pods that opted in: it reads the pod as the API server stores it and
takes the names from its annotations (``hello-mtls.dev/name`` and ``hello-mtls.dev/sans``, judged
by `claims.parse_claim` like a Secret-mode pod's, with ``hello-mtls.dev/mode: pod-certificate``),
never from the request's ``unverifiedUserAnnotations``, which whoever writes the pod's volumes
writes and any node may relay. It has the CA sign the kubelet's key for those names and the
SPIFFE ID of the PCR's service account, and writes the status the API server validates: one
``Issued``, ``Denied`` or ``Failed`` condition, the chain, and
``notBefore``/``beginRefreshAt``/``notAfter`` taken from the certificate itself. It also keeps the
ClusterTrustBundle of its signer name equal to the CA's roots (both during a root rotation).

On each ``Issued`` status it also annotates the request's pod with the intermediate that signed
(`ANNOTATION_INTERMEDIATE`): PCRs are deleted after 15 minutes, so the pod is where the root
rotation's gate (`reconciler`) reads, even after a restart, whether the pod's current certificate
comes from the CA's current intermediate.

Pure functions (`sign_request`, `issued_status`, `refused_status`, `trust_bundle`, `is_final`,
`intermediate_sha256`, `certificate_intermediate`) hold the rules; `Signer` ties them to the API
(`ports.PodCertificates`) and the CA.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from mtls_ca import name_rules
from mtls_operator import metrics
from mtls_operator.claims import (
    MODE,
    NAME,
    POD_CERTIFICATE,
    POD_CERTIFICATE_LIFETIMES,
    Rules,
    parse_claim,
)
from mtls_operator.marks import ANNOTATION_INTERMEDIATE
from mtls_operator.ports import (
    CARefused,
    CAService,
    CAUnavailable,
    Conflict,
    Forbidden,
    Invalid,
    PodCertificates,
)
from mtls_operator.retries import Retries
from mtls_operator.scope import Scope

__all__ = [
    "ANNOTATION_INTERMEDIATE",
    "BUNDLE_SUFFIX",
    "DENIED",
    "FAILED",
    "ISSUED",
    "Refused",
    "Signer",
    "bundle_name",
    "certificate_intermediate",
    "intermediate_sha256",
    "is_final",
    "issued_status",
    "refused_status",
    "sign_request",
    "trust_bundle",
]

ISSUED, DENIED, FAILED = "Issued", "Denied", "Failed"
BUNDLE_SUFFIX = "roots"
# What the API server accepts of an issued certificate (see docs/operator.md, "Pod certificates").
_MIN_LIFETIME = POD_CERTIFICATE_LIFETIMES[0]
_REFRESH_MARGIN = datetime.timedelta(minutes=10)
_MAX_SKEW = datetime.timedelta(minutes=5)
_DEFAULT_MAX_EXPIRATION = 86400  # the API's default for spec.maxExpirationSeconds

_log = logging.getLogger("mtls_operator")

Key = tuple[str, str]


class Refused(Exception):
    """The request gets no certificate: a ``Denied`` (its own fault) or ``Failed`` condition."""

    def __init__(self, condition: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.condition, self.reason, self.message = condition, reason, message


def is_final(pcr: Mapping[str, Any]) -> bool:
    """Whether the request is answered already: its status is then immutable."""
    conditions = (pcr.get("status") or {}).get("conditions") or []
    return any(c.get("type") in (ISSUED, DENIED, FAILED) for c in conditions)


def intermediate_sha256(chain_pem: bytes) -> str:
    """The SHA-256 of the certificate after the leaf in ``chain_pem``: the intermediate that
    signed it, named as the CA's status names its current one ("" if the chain has none)."""
    chain = x509.load_pem_x509_certificates(chain_pem)
    return chain[1].fingerprint(hashes.SHA256()).hex() if len(chain) > 1 else ""


def certificate_intermediate(pod: Mapping[str, Any], signer_name: str) -> str | None:
    """Which intermediate signed the certificate ``pod`` holds from ``signer_name``, as far as
    its `ANNOTATION_INTERMEDIATE` tells; None if it holds none.

    A pod holds one when a projected volume of it has a podCertificate source of that signer and
    the signer annotated it, or it runs: the kubelet starts no container before every volume is
    ready, and a podCertificate volume is ready only once its request is issued. A running pod
    without the annotation got its certificate from an operator before the annotation: "" (not
    known). A pod still waiting for its first certificate (or refused one) and a pod that ended
    hold none.
    """
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    asks = bool(signer_name) and any(
        (source.get("podCertificate") or {}).get("signerName") == signer_name
        for volume in spec.get("volumes") or []
        for source in (volume.get("projected") or {}).get("sources") or []
    )
    phase = status.get("phase")
    if not asks or phase in ("Succeeded", "Failed"):
        return None
    annotated = ((pod.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_INTERMEDIATE)
    if annotated is not None:
        return str(annotated)
    return "" if phase == "Running" else None


def sign_request(
    pcr: Mapping[str, Any], pod: Mapping[str, Any] | None, *, rules: Rules
) -> dict[str, Any]:
    """The ``POST /sign`` body for a PodCertificateRequest of ``pod``.

    ``pod`` is the request's pod as the API server stores it (None: there is none). Its own
    annotations give the names, and only if it opted in to pod-certificate mode; the request's
    ``unverifiedUserAnnotations`` are never read. The lifetime is
    ``spec.maxExpirationSeconds`` (at most the CA's maximum); the duration asked for is shorter
    by the CA's backdating, so that notAfter - notBefore is the lifetime exactly and never
    above what the request allows.

    Raises:
        Refused: the pod is gone or did not opt in, annotations the policy refuses, no readable
            key, or a lifetime the API would not accept. The key's type and a stub request's
            signature are the CA's to check.
    """
    meta, spec = pcr["metadata"], pcr["spec"]
    namespace, pod_name = meta["namespace"], spec.get("podName", "")
    if pod is None or (pod.get("metadata") or {}).get("uid") != spec.get("podUID"):
        raise Refused(DENIED, "PodGone", f"pod '{pod_name}' of this request no longer exists")
    annotations = pod["metadata"].get("annotations") or {}
    not_opted_in = Refused(
        DENIED,
        "NotOptedIn",
        f"pod '{pod_name}' did not opt in: this signer signs only pods annotated {NAME}"
        f" and {MODE}: {POD_CERTIFICATE}",
    )
    if NAME not in annotations:
        raise not_opted_in
    try:
        claim = parse_claim(
            annotations,
            namespace=namespace,
            service_account=spec.get("serviceAccountName") or "default",
            rules=rules,
        )
    except ValueError as error:
        raise Refused(DENIED, "InvalidAnnotations", str(error)) from None
    if claim.mode != POD_CERTIFICATE:
        raise not_opted_in
    asked = datetime.timedelta(seconds=spec.get("maxExpirationSeconds") or _DEFAULT_MAX_EXPIRATION)
    lifetime = min(asked, rules.maximum)
    if lifetime < _MIN_LIFETIME:
        raise Refused(
            FAILED,
            "LifetimeBelowMinimum",
            f"the CA's maximum lifetime {name_rules.format_duration(rules.maximum)} is below"
            f" the {name_rules.format_duration(_MIN_LIFETIME)} a pod certificate needs",
        )
    return {
        **_public_key(spec),
        "names": list(claim.names),
        "duration": name_rules.format_duration(lifetime - name_rules.BACKDATE),
        "namespace": namespace,
        "service_account": spec.get("serviceAccountName") or "default",
    }


def issued_status(
    chain_pem: bytes,
    *,
    max_lifetime: datetime.timedelta,
    refresh_fraction: float,
    now: datetime.datetime,
    intermediate_sha256: str = "",
) -> dict[str, Any]:
    """The status of an issued request, from the chain the CA answered.

    notBefore and notAfter are the leaf's own (certificates carry whole seconds, as metav1.Time
    does); beginRefreshAt is at ``refresh_fraction`` of the lifetime, inside the window the API
    allows (10 minutes after notBefore to 10 minutes before notAfter).

    Raises:
        Refused: ``Failed`` if the certificate would not pass the API server's checks (the
            intermediate expires too soon, or the clocks disagree by more than 5 minutes).
    """
    leaf = x509.load_pem_x509_certificates(chain_pem)[0]
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    lifetime = not_after - not_before
    if not _MIN_LIFETIME <= lifetime <= max_lifetime:
        raise Refused(
            FAILED,
            "LifetimeOutOfBounds",
            f"the CA issued a certificate valid for {lifetime}, outside the"
            f" {name_rules.format_duration(_MIN_LIFETIME)} to"
            f" {max_lifetime} this request allows (does the CA's intermediate expire soon?)",
        )
    if abs(not_before - now) > _MAX_SKEW:
        raise Refused(
            FAILED, "ClockSkew", f"the CA's notBefore {_time(not_before)} is not near now"
        )
    refresh = not_before + lifetime * refresh_fraction
    refresh = min(max(refresh, not_before + _REFRESH_MARGIN), not_after - _REFRESH_MARGIN)
    message = f"certificate {leaf.serial_number:x}"
    if intermediate_sha256:
        message += f" from intermediate {intermediate_sha256}"
    return {
        "conditions": [_condition(ISSUED, "Issued", message, now)],
        "certificateChain": chain_pem.decode(),
        "notBefore": _time(not_before),
        "beginRefreshAt": _time(refresh.replace(microsecond=0)),
        "notAfter": _time(not_after),
    }


def refused_status(refused: Refused, *, now: datetime.datetime) -> dict[str, Any]:
    """The status of a denied or failed request: the condition alone, as the API requires."""
    return {"conditions": [_condition(refused.condition, refused.reason, refused.message, now)]}


def bundle_name(signer_name: str) -> str:
    """The ClusterTrustBundle's name: the API requires the signer name with ``/`` as ``:``."""
    return f"{signer_name.replace('/', ':')}:{BUNDLE_SUFFIX}"


def trust_bundle(signer_name: str, roots_pem: bytes) -> dict[str, Any]:
    """The ClusterTrustBundle that carries the CA's roots for ``signer_name``."""
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "ClusterTrustBundle",
        "metadata": {
            "name": bundle_name(signer_name),
            "labels": {"app.kubernetes.io/managed-by": "hello-mtls-operator"},
        },
        "spec": {"signerName": signer_name, "trustBundle": roots_pem.decode()},
    }


@dataclass
class _Pending:
    pcr: dict[str, Any]
    seen: float


class Signer:
    """Answers the PodCertificateRequests of one signer name; publishes its trust bundle.

    `offer` takes requests from the list and watch (`run`); the ones not answered yet are
    dispatched by key and answered by `answer` on the caller's threads (the operator's work
    queue), one at a time per key. An answered request is never written again, so after a
    restart only the pending ones are signed.
    """

    def __init__(
        self,
        api: PodCertificates,
        ca_service: CAService,
        *,
        signer_name: str,
        rules: Rules,
        scope: Scope,
        refresh_fraction: float,
        status_seconds: float = 5.0,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        monotonic: Callable[[], float] = time.monotonic,
        dispatch: Callable[[Key], None] | None = None,
    ) -> None:
        self.signer_name = signer_name
        self._api = api
        self._ca_service = ca_service
        self._rules = rules
        self._scope = scope
        self._fraction = refresh_fraction
        self._status_seconds = status_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._dispatch = dispatch or self.answer
        self._lock = threading.Lock()
        self._pending: dict[Key, _Pending] = {}
        self._answering: set[Key] = set()
        self._retries = Retries()
        self._published_at = -float("inf")
        # Pod (namespace, name) -> (UID, intermediate) of an annotation still to write.
        self._annotations: dict[Key, tuple[str, str]] = {}
        self._annotation_retries = Retries()

    def offer(self, pcr: dict[str, Any], event_type: str | None = None) -> None:
        """Take in one request from a list or watch event; dispatch it if it needs an answer."""
        meta = pcr.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        mine = (pcr.get("spec") or {}).get("signerName") == self.signer_name
        if event_type == "DELETED" or not mine or is_final(pcr):
            with self._lock:
                self._pending.pop(key, None)
            self._retries.succeeded(key)
            return
        with self._lock:
            if key in self._answering:
                # A list taken before our status landed: the watch brings the answer, and a
                # failed answer is retried, so signing it again now would only sign it twice.
                return
            known = self._pending.get(key)
            self._pending[key] = _Pending(pcr, known.seen if known else self._monotonic())
        self._dispatch(key)

    def answer(self, key: Key) -> None:
        """Sign, deny or fail the pending request ``key`` and write its status."""
        with self._lock:
            pending = self._pending.pop(key, None)
            if pending is None:
                return
            self._answering.add(key)
        try:
            status = self._status_for(pending.pcr)
            self._write(key, pending.pcr, status, pending.seen)
        except Exception as error:  # the CA or the API server is away: try again later
            with self._lock:
                self._pending.setdefault(key, pending)
            delay = self._retries.failed(key, self._monotonic())
            reason = "ca-unreachable" if isinstance(error, CAUnavailable) else "error"
            metrics.FAILED.labels(f"pod-certificate-{reason}").inc()
            _log.warning("PodCertificateRequest %s/%s: %s; retrying in %.0f s", *key, error, delay)
        finally:
            with self._lock:
                self._answering.discard(key)

    def tick(self) -> None:
        """Retries that are due (answers and pod annotations); the trust bundle, every
        ``status_seconds``."""
        now = self._monotonic()
        for key in self._retries.due(now):
            assert isinstance(key, tuple)
            with self._lock:
                waiting = key in self._pending
            if waiting:
                self._dispatch(key)
        for pod in self._annotation_retries.due(now):
            assert isinstance(pod, tuple)
            self._annotate(pod)
        if now - self._published_at >= self._status_seconds:
            self._published_at = now
            self.publish_trust_bundle()

    def publish_trust_bundle(self) -> None:
        """Make the signer's ClusterTrustBundle hold exactly the CA's current roots."""
        try:
            roots = self._ca_service.status().bundle_pem
        except CAUnavailable as error:
            _log.warning("CA status unavailable; trust bundle not checked: %s", error)
            return
        wanted = trust_bundle(self.signer_name, roots)
        current = self._api.get_trust_bundle(wanted["metadata"]["name"])
        try:
            if current is None:
                self._api.create_trust_bundle(wanted)
            elif _certificates(current["spec"].get("trustBundle", "")) != _certificates(
                wanted["spec"]["trustBundle"]
            ):
                current["spec"]["trustBundle"] = wanted["spec"]["trustBundle"]
                self._api.replace_trust_bundle(current)
            else:
                return
        except Conflict:
            self._published_at = -float("inf")  # changed meanwhile: read it again next tick
            return
        _log.info("trust bundle %s now holds the CA's roots", wanted["metadata"]["name"])

    def run(self, stop: threading.Event) -> None:
        """List, then watch, the requests of our signer name until ``stop`` is set."""
        while not stop.is_set():
            started = self._monotonic()
            try:
                items, version = self._api.list_requests(self.signer_name)
                for pcr in items:
                    self.offer(pcr)
                for event_type, pcr in self._api.watch_requests(self.signer_name, version):
                    if stop.is_set():
                        return
                    self.offer(pcr, event_type)
            except Exception as error:  # the watch expired (410) or the API server went away
                _log.info("watch of PodCertificateRequests ended (%s); listing again", error)
            if self._monotonic() - started < 1.0:
                stop.wait(1.0)  # a watch that ends at once must not turn into a busy loop

    def _status_for(self, pcr: Mapping[str, Any]) -> dict[str, Any]:
        try:
            namespace, spec = pcr["metadata"]["namespace"], pcr["spec"]
            refusal = self._scope.refusal(namespace)
            if refusal is not None:
                raise Refused(DENIED, "NamespaceNotServed", refusal)
            pod = self._api.get_pod(namespace, spec.get("podName", ""))
            request = sign_request(pcr, pod, rules=self._rules)
            try:
                answer = self._ca_service.sign(request)
            except CARefused as error:
                # Our request is well formed and its names passed our rules: a 400 is about the
                # kubelet's key (a type or size the CA does not sign), a 403 about the CA's own
                # rules (configured apart from the operator's).
                reason = "UnsupportedKeyType" if error.status == 400 else "RefusedByCA"
                raise Refused(DENIED, reason, f"the CA refused: {error}") from None
            return issued_status(
                answer.certificate,
                max_lifetime=datetime.timedelta(
                    seconds=pcr["spec"].get("maxExpirationSeconds") or _DEFAULT_MAX_EXPIRATION
                ),
                refresh_fraction=self._fraction,
                now=self._clock(),
                intermediate_sha256=answer.intermediate_sha256,
            )
        except Refused as refused:
            return refused_status(refused, now=self._clock())

    def _write(self, key: Key, pcr: dict[str, Any], status: dict[str, Any], seen: float) -> None:
        condition = status["conditions"][0]
        try:
            if not self._api.update_request_status({**pcr, "status": status}):
                return  # deleted meanwhile (the kubelet gave up, or the pod went away)
        except Conflict:
            fresh = self._api.get_request(*key)
            with self._lock:
                self._answering.discard(key)
            if fresh is not None:
                self.offer(fresh)  # answered meanwhile: left alone; else answered again
            return
        except Invalid as error:
            # The API server's checks and ours disagree: a Failed condition says so on the pod
            # rather than a retry loop that cannot succeed.
            if status["conditions"][0]["type"] == FAILED:
                raise
            refused = Refused(FAILED, "StatusRefused", f"the API server refused: {error}")
            self._write(key, pcr, refused_status(refused, now=self._clock()), seen)
            return
        self._retries.succeeded(key)
        result = condition["type"].lower()
        metrics.POD_CERTIFICATES.labels(result).inc()
        metrics.POD_CERTIFICATE_SECONDS.observe(self._monotonic() - seen)
        spec = pcr["spec"]
        _log.info(
            "PodCertificateRequest %s/%s of pod %s: %s (%s)",
            *key,
            spec.get("podName"),
            condition["type"],
            condition["message"],
        )
        if condition["type"] == ISSUED:
            pod_key = (key[0], spec.get("podName", ""))
            signed_by = intermediate_sha256(status["certificateChain"].encode())
            wanted = (spec.get("podUID", ""), signed_by)
            with self._lock:
                self._annotations[pod_key] = wanted
            self._annotate(pod_key)
        else:
            pod = {
                "metadata": {
                    "namespace": key[0],
                    "name": spec.get("podName", ""),
                    "uid": spec.get("podUID", ""),
                }
            }
            self._api.event(
                pod,
                type="Warning",
                reason=f"PodCertificate{condition['type']}",
                message=f"{condition['reason']}: {condition['message']}",
            )

    def _annotate(self, pod: Key) -> None:
        """Write the annotation waiting for ``pod``; a failure is tried again from `tick`."""
        with self._lock:
            wanted = self._annotations.pop(pod, None)
        if wanted is None:
            return
        uid, intermediate = wanted
        try:
            # False: the pod is gone, or its name is another pod's now; nothing to record.
            self._api.annotate_pod(*pod, uid, {ANNOTATION_INTERMEDIATE: intermediate})
        except Forbidden as error:
            # Not retried: e.g. a pod outside operator.watchNamespaces, where the operator may
            # not patch pods (and the rotation's gate does not see it either).
            self._annotation_retries.succeeded(pod)
            metrics.FAILED.labels("pod-certificate-annotation").inc()
            _log.warning("pod %s/%s: %s not written: %s", *pod, ANNOTATION_INTERMEDIATE, error)
        except Exception as error:  # the API server or the network
            with self._lock:
                self._annotations.setdefault(pod, wanted)  # unless a newer one came meanwhile
            delay = self._annotation_retries.failed(pod, self._monotonic())
            metrics.FAILED.labels("pod-certificate-annotation").inc()
            _log.warning(
                "pod %s/%s: %s not written: %s; retrying in %.0f s",
                *pod,
                ANNOTATION_INTERMEDIATE,
                error,
                delay,
            )
        else:
            self._annotation_retries.succeeded(pod)


def _public_key(spec: Mapping[str, Any]) -> dict[str, str]:
    """The kubelet's key as ``POST /sign`` takes it; the CA checks it (and a CSR's signature)."""
    try:
        if spec.get("stubPKCS10Request"):
            return {"csr": _pem("CERTIFICATE REQUEST", spec["stubPKCS10Request"])}
        if spec.get("pkixPublicKey"):
            return {"public_key": _pem("PUBLIC KEY", spec["pkixPublicKey"])}
    except (ValueError, binascii.Error) as error:
        raise Refused(DENIED, "InvalidPublicKey", f"the key is not base64: {error}") from None
    raise Refused(DENIED, "InvalidPublicKey", "the request has no stubPKCS10Request")


def _pem(label: str, value: str) -> str:
    der = base64.b64decode(value, validate=True)  # []byte fields are base64 in the API's JSON
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n"


def _condition(kind: str, reason: str, message: str, now: datetime.datetime) -> dict[str, str]:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": _time(now),
    }


def _time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _certificates(bundle: str) -> set[bytes]:
    try:
        found = x509.load_pem_x509_certificates(bundle.encode())
    except ValueError:
        return set()
    return {c.tbs_certificate_bytes for c in found}
