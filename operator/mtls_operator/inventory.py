"""What the operator knows about claiming pods and managed Secrets, shared by its threads.

Kopf's handler threads and the reconcile loop read and change it at once, so every method takes
one lock and returns copies or frozen values. It holds only what decisions need (a pod's claim,
a Secret's inspection), never whole pod or Secret bodies: the operator's memory stays flat as
the number of identities grows.

Nothing here survives a restart, and nothing needs to: the Secrets themselves are the record
(see `mtls_operator.decisions`), and for pod-certificate pods their annotation
`mtls_contract.marks.ANNOTATION_INTERMEDIATE`, which their events bring back.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from mtls_contract.marks import ANNOTATION_CLAIM, ANNOTATION_RENEW, POD_CERTIFICATE
from mtls_operator.certs import Inspection, inspect
from mtls_operator.claims import ClaimingPod
from mtls_operator.tlssecret import decode_data

__all__ = ["Inventory", "Key", "KnownSecret", "namespace_of"]

Key = tuple[str, str]  # (namespace, Secret name)


def namespace_of(key: Key) -> str:
    """The work queues' group of a key (a Secret's, or a pod-certificate request's): its
    namespace, so that namespaces take turns (`workqueue.WorkQueue`)."""
    return key[0]


@dataclass(frozen=True)
class KnownSecret:
    """The last seen state of a Secret, so unchanged Secrets cost no API call."""

    resource_version: str
    inspection: Inspection
    claim_digest: str | None
    owners: frozenset[str]
    renew_requested: bool = False
    """The Secret carries `mtls_contract.marks.ANNOTATION_RENEW`."""


class Inventory:
    """Pods by UID and by the Secret they claim (pod-certificate pods: by namespace), Secrets by
    key, and the warnings already given."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pods: dict[str, ClaimingPod] = {}
        self._by_key: dict[Key, set[str]] = {}
        self._pod_certificates: dict[str, set[str]] = {}  # namespace -> UIDs
        self._known: dict[Key, KnownSecret] = {}
        self._warned: dict[str, tuple[str, str]] = {}

    # Pods ---------------------------------------------------------------------------------

    def put_pod(self, pod: ClaimingPod) -> ClaimingPod | None:
        """Record ``pod``, replacing what was known; a valid claim ends its annotation warning.

        Returns:
            The pod as known before; None if it was not known.
        """
        with self._lock:
            known = self._forget_pod(pod.uid)
            self._pods[pod.uid] = pod
            if pod.claim is not None:
                if pod.claim.mode == POD_CERTIFICATE:
                    self._pod_certificates.setdefault(pod.namespace, set()).add(pod.uid)
                else:
                    self._by_key.setdefault((pod.namespace, pod.claim.secret), set()).add(pod.uid)
                if self._warned.get(pod.uid, ("",))[0] == "InvalidAnnotation":
                    del self._warned[pod.uid]
            return known

    def drop_pod(self, uid: str) -> None:
        """The pod is gone (or going): forget it and its warnings."""
        with self._lock:
            self._forget_pod(uid)
            self._warned.pop(uid, None)

    def pods_for(self, key: Key) -> list[ClaimingPod]:
        """The pods claiming Secret ``key``."""
        with self._lock:
            return self._pods_for(key)

    def claimed_keys(self) -> list[Key]:
        """Every Secret some pod claims."""
        with self._lock:
            return list(self._by_key)

    def invalid_pods(self) -> list[ClaimingPod]:
        """The pods whose annotations are invalid."""
        with self._lock:
            return [pod for pod in self._pods.values() if pod.claim is None]

    def pod_certificate_pods(self, namespace: str) -> list[ClaimingPod]:
        """The pods of ``namespace`` in pod-certificate mode."""
        with self._lock:
            return [self._pods[uid] for uid in self._pod_certificates.get(namespace, ())]

    def pod_certificates_not_from(self, intermediate_sha256: str) -> list[ClaimingPod]:
        """The pod-certificate pods holding a certificate not known to come from
        ``intermediate_sha256``, by namespace and name."""
        with self._lock:
            behind = [
                self._pods[uid]
                for uids in self._pod_certificates.values()
                for uid in uids
                if self._pods[uid].certificate_intermediate not in (None, intermediate_sha256)
            ]
        return sorted(behind, key=lambda pod: (pod.namespace, pod.name))

    def pod_certificate_namespaces(self) -> list[str]:
        """Every namespace with a pod in pod-certificate mode."""
        with self._lock:
            return list(self._pod_certificates)

    # Secrets ------------------------------------------------------------------------------

    def remember(self, key: Key, secret: Mapping[str, Any]) -> None:
        """Record what Secret ``key`` holds now (inspected once per resourceVersion)."""
        meta = secret.get("metadata", {})
        version = meta.get("resourceVersion", "")
        with self._lock:
            known = self._known.get(key)
            if known is not None and version and known.resource_version == version:
                return
        fresh = KnownSecret(
            resource_version=version,
            inspection=inspect(decode_data(secret)),
            claim_digest=(meta.get("annotations") or {}).get(ANNOTATION_CLAIM),
            owners=frozenset(ref.get("uid", "") for ref in meta.get("ownerReferences") or []),
            renew_requested=ANNOTATION_RENEW in (meta.get("annotations") or {}),
        )
        with self._lock:
            self._known[key] = fresh

    def forget_secret(self, key: Key) -> None:
        """Secret ``key`` was deleted (or not found)."""
        with self._lock:
            self._known.pop(key, None)

    def view(self, key: Key) -> tuple[list[ClaimingPod], KnownSecret | None]:
        """The pods claiming ``key`` and what its Secret held, read together."""
        with self._lock:
            return self._pods_for(key), self._known.get(key)

    def known_claimed(self) -> list[KnownSecret | None]:
        """For every claimed Secret, what it holds (None: not seen yet)."""
        with self._lock:
            return [self._known.get(key) for key in self._by_key]

    # Warnings -----------------------------------------------------------------------------

    def first_warning(self, uid: str, reason: str, message: str) -> bool:
        """Record a warning for pod ``uid``; False when exactly this one was given already."""
        with self._lock:
            if self._warned.get(uid) == (reason, message):
                return False
            self._warned[uid] = (reason, message)
            return True

    def warned_reason(self, uid: str) -> str:
        """The reason of the last warning given to pod ``uid`` ("" if none is standing)."""
        with self._lock:
            return self._warned.get(uid, ("",))[0]

    def clear_warnings(self, uids: list[str]) -> None:
        """The pods got what they asked for: a later problem deserves a new Event."""
        with self._lock:
            for uid in uids:
                self._warned.pop(uid, None)

    # Internals (the lock is held) ---------------------------------------------------------

    def _pods_for(self, key: Key) -> list[ClaimingPod]:
        return [self._pods[uid] for uid in self._by_key.get(key, ())]

    def _forget_pod(self, uid: str) -> ClaimingPod | None:
        old = self._pods.pop(uid, None)
        if old is None or old.claim is None:
            return old
        if old.claim.mode == POD_CERTIFICATE:
            _discard(self._pod_certificates, old.namespace, uid)
        else:
            _discard(self._by_key, (old.namespace, old.claim.secret), uid)
        return old


_K = TypeVar("_K")


def _discard(index: dict[_K, set[str]], key: _K, uid: str) -> None:
    uids = index.get(key, set())
    uids.discard(uid)
    if not uids:
        index.pop(key, None)
