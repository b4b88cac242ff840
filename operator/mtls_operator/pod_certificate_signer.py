"""The signer of PodCertificateRequests: the API's requests of our signer name, answered with
the CA by the rules of `pod_certificates`, and the ClusterTrustBundle of its name.

`Signer.run` lists and watches the requests; each one not answered yet is dispatched by key to
the operator's work queue and answered by `Signer.answer`; `Signer.tick` retries what failed and
publishes the trust bundle. On each ``Issued`` status the request's pod is annotated with the
intermediate that signed (`mtls_contract.marks.ANNOTATION_INTERMEDIATE`), which the root rotation
reads (`rotation_driver`).
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from mtls_contract.marks import ANNOTATION_INTERMEDIATE
from mtls_operator import metrics
from mtls_operator.claims import Rules
from mtls_operator.pod_certificates import (
    DENIED,
    FAILED,
    ISSUED,
    Refused,
    intermediate_sha256,
    is_final,
    issued_status,
    max_lifetime,
    refused_status,
    sign_request,
    trust_bundle,
)
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

__all__ = ["Signer"]

_log = logging.getLogger("mtls_operator")

Key = tuple[str, str]


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
                max_lifetime=max_lifetime(pcr),
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


def _certificates(bundle: str) -> set[bytes]:
    try:
        found = x509.load_pem_x509_certificates(bundle.encode())
    except ValueError:
        return set()
    return {c.tbs_certificate_bytes for c in found}
