"""Keeps one Secret per claimed identity right: issue, renew, heal, refresh trust, rotate.
For pods in pod-certificate mode it keeps their namespace's TLS-policy ConfigMap instead, and
holds the root rotation until each holds a certificate from the new intermediate.

The handlers feed it pod and Secret events; the reconcile loop calls `Reconciler.tick` about
once a second. It talks to the cluster and to the CA only through two small ports
(`ports.Cluster`, `ports.CAService`), implemented by `kube` and `ca_client`; what it knows of
pods and Secrets lives in `inventory.Inventory`.

Every replica of the operator takes in the events, so its inventory is current; only the leader
(``leading``: `leadership.Elector.leading`) acts on them. A standby writes nothing, signs nothing
and posts no Event until it leads and `Reconciler.take_over` has it catch up.

Restart safety comes from deciding on what the Secret holds (`decisions.decide`), not on
memory: after a restart every valid Secret is reused as it is. Each Secret is handled under its
own lock and written with its ``resourceVersion``, so one identity is never issued twice at once.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mtls_ca.tls_profiles import policy_bytes
from mtls_context.layout import POLICY, federated_bundle, federated_bundles
from mtls_operator import metrics
from mtls_operator.bundle_fetcher import FederatedBundles
from mtls_operator.certs import inspect, new_key_and_csr, sha256_hex
from mtls_operator.claims import POD_CERTIFICATE, Claim, claim_moved, parse_claim
from mtls_operator.decisions import Action, Decision, choose_claim, decide
from mtls_operator.inventory import ClaimingPod, Inventory, Key, pod_claims
from mtls_operator.marks import ANNOTATION_VERSION
from mtls_operator.pod_certificates import certificate_intermediate
from mtls_operator.ports import CARefused, CAService, CAUnavailable, Cluster, Conflict
from mtls_operator.retries import Retries
from mtls_operator.rotation import RotationGate, needs_new_leaves, reflects
from mtls_operator.settings import Settings
from mtls_operator.tlssecret import (
    ANNOTATION_BUNDLE,
    LABEL_MANAGED,
    POLICY_CONFIG_MAP,
    Answer,
    CAView,
    merge_owners,
    policy_config_map,
    refreshed_data,
    secret_body,
)

__all__ = ["ANNOTATION_VERSION", "Reconciler"]

"""Set on pods after their Secret changed: the kubelet then refreshes the volume in seconds."""

_BEHIND_LOG_SECONDS = 60.0  # how often the pods a root rotation waits for are named

_log = logging.getLogger("mtls_operator")


@dataclass
class _KeyLock:
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


class Reconciler:
    """One operator's memory of pods and Secrets, and the actions that keep them right."""

    def __init__(
        self,
        cluster: Cluster,
        ca_service: CAService,
        settings: Settings,
        *,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        monotonic: Callable[[], float] = time.monotonic,
        dispatch: Callable[[Key], None] | None = None,
        signer_name: str = "",
        leading: Callable[[], bool] = lambda: True,
        federation: FederatedBundles | None = None,
    ) -> None:
        """``dispatch`` is how a key that needs a look gets reconciled: the operator passes
        `workqueue.WorkQueue.add`; by default it is `reconcile`, in the caller's thread.
        ``signer_name`` is the pod-certificate signer's (`config.Config.pod_certificate_signer`):
        only a pod whose volume asks it holds a certificate the root rotation waits for.
        ``leading`` says whether this replica may work now; by default it always may.
        ``federation`` fetches the federated trust domains' bundles (none by default)."""
        self._cluster = cluster
        self._ca_service = ca_service
        self._settings = settings
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()  # guards _key_locks; the inventory has its own
        self._key_locks: dict[Key, _KeyLock] = {}
        self._inventory = Inventory()
        self._retries = Retries()
        self._gate = RotationGate(grace=settings.rotation_grace)
        self._ca: CAView | None = None
        self._ca_read_at = -float("inf")
        self._resynced_at = -float("inf")
        self._dispatch = dispatch or self.reconcile
        self._policy_lock = threading.Lock()  # one TLS-policy ConfigMap write at a time
        self._policies: dict[str, bytes] = {}  # namespace -> tls-policy.json its ConfigMap has
        self._signer_name = signer_name
        self._behind_logged_at = -float("inf")
        self._leading = leading
        self._warn_invalid = False  # the next tick warns every pod with invalid annotations
        self._federation = federation

    # Events -------------------------------------------------------------------------------

    def pod_event(self, body: Mapping[str, Any], event_type: str | None) -> None:
        """Take in one pod event (from kopf's ``on.event`` on annotated pods)."""
        meta = body.get("metadata", {})
        uid = meta.get("uid", "")
        if event_type == "DELETED" or meta.get("deletionTimestamp"):
            self._inventory.drop_pod(uid)
            return
        namespace = meta.get("namespace", "")
        try:
            claim = parse_claim(
                meta.get("annotations") or {},
                namespace=namespace,
                service_account=(body.get("spec") or {}).get("serviceAccountName") or "default",
                rules=self._settings.rules,
            )
        except ValueError as error:
            claim, problem = None, str(error)
            if self._leading():
                metrics.FAILED.labels("invalid-annotation").inc()
                self._warn_once(body, "InvalidAnnotation", problem)
        else:
            problem = ""
        pod_certificate = claim is not None and claim.mode == POD_CERTIFICATE
        pod = ClaimingPod(
            namespace,
            meta.get("name", ""),
            uid,
            meta.get("creationTimestamp", ""),
            claim,
            certificate_intermediate=(
                certificate_intermediate(body, self._signer_name) if pod_certificate else None
            ),
            problem=problem,
        )
        known = self._inventory.put_pod(pod)
        if not self._leading():
            return  # a standby only keeps count; `take_over` catches up on everything
        moved = None
        if known is not None and known.claim is not None and claim is not None:
            moved = claim_moved(known.claim, claim)
        if moved:
            # The names policy refuses such an update; this one got through (the policy is off,
            # or failed open): what the pod mounts is no longer renewed, and it should know.
            self._warn_once(body, "ClaimMoved", moved)
        first_seen = known is None
        if pod_certificate:
            # The kubelet holds this pod's key and asks the signer (`pod_certificates`): no Secret.
            self._pod_certificate_pod(pod, first_seen)
        elif claim is not None:
            self._dispatch((namespace, claim.secret))

    def secret_event(self, body: Mapping[str, Any], event_type: str | None) -> None:
        """Take in one event of a managed Secret; heal it at once if it was broken or deleted.

        A Secret no pod claims is not read: anyone who may create Secrets in a namespace the
        operator serves can label one managed, with anything in it. Once a pod claims it, its
        reconcile reads it (`Inventory.remember` on what the API server returns).
        """
        meta = body.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        claimed = bool(self._inventory.pods_for(key))
        if event_type == "DELETED" or not claimed:
            self._inventory.forget_secret(key)
        else:
            self._inventory.remember(key, body)
        if self._leading() and claimed and self._needs_action(key):
            self._dispatch(key)

    def take_over(self) -> None:
        """This replica became the leader: its next `tick` reads the CA's state, reconciles every
        Secret it knows of that needs it (what the last leader had queued among them) and warns
        the pods with invalid annotations, as an operator does after a restart."""
        self._ca_read_at = self._resynced_at = -float("inf")
        self._warn_invalid = True

    # The loop -----------------------------------------------------------------------------

    def tick(self) -> None:
        """One pass of the reconcile loop: CA state, due retries, periodic resync, rotation.
        Nothing on a standby."""
        if not self._leading():
            return
        now = self._monotonic()
        if now - self._ca_read_at >= self._settings.status_seconds:
            self._read_ca(now)
        if self._federation is not None and self._federation.poll():
            self._ca = self._with_federation(self._ca)
            self._resynced_at = -float("inf")  # every Secret and ConfigMap gets them now
        if self._warn_invalid:
            self._warn_invalid = False
            for pod in self._inventory.invalid_pods():
                self._warn_once(pod.ref, "InvalidAnnotation", pod.problem)
        for key in self._retries.due(now):
            assert isinstance(key, tuple)
            self._dispatch(key)
        if now - self._resynced_at >= self._settings.resync_seconds:
            self._resynced_at = now
            for key in self._inventory.claimed_keys():
                if not self._retries.failures(key) and self._needs_action(key):
                    self._dispatch(key)
            self._resync_policy_config_maps()
            self._export_gauges()
        self._drive_rotation()

    def reconcile(self, key: Key) -> None:
        """Make the Secret ``key`` right for the pods that claim it; failures are retried.
        Nothing once this replica is not the leader (any more)."""
        if not self._leading():
            return
        with self._lock:
            entry = self._key_locks.setdefault(key, _KeyLock())
            entry.users += 1
        try:
            with entry.lock:
                self._handle(key)
        finally:
            with self._lock:  # a lock lives only while someone uses it: no growth with churn
                entry.users -= 1
                if not entry.users:
                    del self._key_locks[key]

    def _handle(self, key: Key) -> None:
        try:
            self._reconcile(key)
        except CAUnavailable as error:
            self._failed(key, "ca-unreachable", "CAUnreachable", f"CA unreachable: {error}")
        except CARefused as error:
            self._failed(key, "ca-refused", "IssueRefused", f"the CA refused: {error}")
        except Conflict:
            self._failed(key, "conflict", None, "")
        except Exception as error:  # the API server or the network; retried with backoff
            _log.warning("reconcile of %s/%s failed: %s", *key, error)
            self._failed(key, "error", None, "")
        else:
            self._retries.succeeded(key)

    # Internals ----------------------------------------------------------------------------

    def _reconcile(self, key: Key) -> None:
        pods, known = self._inventory.view(key)
        if not pods:
            self._retries.succeeded(key)
            return
        if known is not None and not self._needs_action(key):
            return
        secret = self._cluster.get_secret(*key)
        if secret is None:
            self._inventory.forget_secret(key)
        else:
            self._inventory.remember(key, secret)
        pods, known = self._inventory.view(key)
        claim, agree, disagree = choose_claim(
            pod_claims(pods), known.claim_digest if known else None
        )
        by_uid = {p.uid: p for p in pods}
        if secret is not None and not _managed(secret):
            for pod in pods:
                self._warn_once(
                    pod.ref,
                    "SecretNotManaged",
                    f"Secret '{key[1]}' exists and is not managed by hello-mtls; it is left alone:"
                    " delete it or give the pod another hello-mtls.dev/secret",
                )
            return
        for loser in disagree:
            self._warn_once(
                by_uid[loser.uid].ref,
                "SecretConflict",
                f"Secret '{claim.secret}' serves {', '.join(claim.names)} for pod"
                f" '{agree[0].name}'; this pod asks for {', '.join(loser.claim.names)} and gets"
                " no certificate of its own: give it another hello-mtls.dev/secret",
            )
        owners = [by_uid[p.uid].ref for p in agree]
        decision = decide(
            claim,
            known.inspection if known else None,
            known.claim_digest if known else None,
            self._ca,
            now=self._clock(),
            fraction=self._settings.renew_fraction,
            renew_requested=known.renew_requested if known else False,
        )
        if decision.action is Action.ISSUE:
            self._issue(key, claim, secret, owners, decision)
        elif decision.action is Action.REFRESH_TRUST:
            assert secret is not None and self._ca is not None
            secret["data"] = refreshed_data(secret.get("data") or {}, self._ca)
            secret["metadata"].setdefault("annotations", {})[ANNOTATION_BUNDLE] = (
                self._ca.bundle_sha256
            )
            merge_owners(secret, owners)
            self._write(key, secret, created=False, pods=owners)
            metrics.TRUST_REFRESHED.inc()
            _log.info("refreshed trust of %s/%s: %s", *key, decision.reason)
        elif secret is not None and merge_owners(secret, owners):
            self._write(key, secret, created=False, pods=[])

    def _issue(
        self,
        key: Key,
        claim: Claim,
        secret: dict[str, Any] | None,
        owners: list[dict[str, Any]],
        decision: Decision,
    ) -> None:
        started = time.perf_counter()
        key_pem, csr_pem = new_key_and_csr(claim)
        answer = self._ca_service.sign(claim.sign_request(csr_pem))
        body = secret_body(
            claim,
            key_pem,
            answer,
            pods=owners,
            labels=self._settings.labels,
            federated=self._ca.federated if self._ca is not None else None,
        )
        if secret is not None:
            body["metadata"]["resourceVersion"] = secret["metadata"].get("resourceVersion")
            refs = body["metadata"]["ownerReferences"]
            seen = {ref.get("uid") for ref in refs}
            refs += [
                r
                for r in secret["metadata"].get("ownerReferences") or []
                if r.get("uid") not in seen
            ]
        self._write(key, body, created=secret is None, pods=owners)
        metrics.ISSUANCE_SECONDS.observe(time.perf_counter() - started)
        if secret is None:
            metrics.ISSUED.inc()
        else:
            metrics.RENEWED.labels(decision.reason).inc()
        self._ca_from_answer(answer)
        _log.info(
            "issued serial %s for %s into Secret %s/%s (%s)",
            answer.serial,
            ", ".join(claim.names),
            *key,
            decision.reason,
        )
        self._cluster.event(
            owners[0],
            type="Normal",
            reason="Issued",
            message=f"certificate {answer.serial} for {', '.join(claim.names)} in Secret "
            f"'{claim.secret}' ({decision.reason}), valid until {answer.not_after}",
        )

    def _write(
        self, key: Key, body: dict[str, Any], *, created: bool, pods: list[dict[str, Any]]
    ) -> None:
        written = (
            self._cluster.create_secret(body) if created else self._cluster.replace_secret(body)
        )
        self._inventory.remember(key, written)
        self._inventory.clear_warnings([pod["metadata"]["uid"] for pod in pods])
        if created:
            return  # pods wait for a missing Secret; the kubelet mounts it when it appears
        version = written["metadata"].get("resourceVersion", "")
        for pod in pods:
            meta = pod["metadata"]
            self._cluster.annotate_pod(
                meta["namespace"], meta["name"], {ANNOTATION_VERSION: version}
            )

    def _pod_certificate_pod(self, pod: ClaimingPod, first_seen: bool) -> None:
        # Only with the signer on (`claims.parse_claim` refuses the mode otherwise). The kubelet
        # starts no such pod before the ConfigMap exists, so it is written on the pod's event,
        # not left to the resync; each new pod has it read once (it may have been deleted since
        # it was last written).
        if first_seen or not self._policy_current(pod.namespace):
            self._write_policy_config_map(pod.namespace)

    def _resync_policy_config_maps(self) -> None:
        if not self._settings.rules.pod_certificates:
            return
        namespaces = self._inventory.pod_certificate_namespaces()
        with self._policy_lock:  # no memory of namespaces that have no such pods any more
            for namespace in set(self._policies) - set(namespaces):
                del self._policies[namespace]
        for namespace in namespaces:
            if not self._policy_current(namespace):
                self._write_policy_config_map(namespace)

    def _policy_current(self, namespace: str) -> bool:
        ca = self._ca
        return ca is not None and self._policies.get(namespace) == _config_map_digest(
            policy_bytes(ca.tls_policy), ca
        )

    def _write_policy_config_map(self, namespace: str) -> None:
        """Make ``namespace``'s ConfigMap carry the CA's TLS policy; a failure is tried again
        at the next resync, as the ConfigMap is then not known to be current."""
        ca = self._ca
        if ca is None:
            return  # the first tick reads the CA's state, and its resync writes the ConfigMap
        wanted = policy_config_map(
            namespace,
            ca.tls_policy,
            labels=self._settings.labels,
            crl_pem=ca.crl_pem,
            federated=ca.federated,
        )
        with self._policy_lock:
            try:
                current = self._cluster.get_config_map(namespace, POLICY_CONFIG_MAP)
                if current is None:
                    self._cluster.create_config_map(wanted)
                    _log.info("created ConfigMap %s/%s", namespace, POLICY_CONFIG_MAP)
                elif not _managed(current):
                    for pod in self._inventory.pod_certificate_pods(namespace):
                        self._warn_once(
                            pod.ref,
                            "ConfigMapNotManaged",
                            f"ConfigMap '{POLICY_CONFIG_MAP}' exists and is not managed by"
                            " hello-mtls; it is left alone: delete it so that the operator can"
                            " write the TLS policy this pod's volume needs",
                        )
                    return
                elif any(
                    (current.get("data") or {}).get(k) != v for k, v in wanted["data"].items()
                ) or set(federated_bundles(current.get("data") or {}).values()) != set(
                    ca.federated
                ):
                    kept = {
                        k: v
                        for k, v in (current.get("data") or {}).items()
                        if not federated_bundles([k])
                    }
                    current["data"] = {**kept, **wanted["data"]}
                    self._cluster.replace_config_map(current)
                    _log.info(
                        "updated the TLS policy, CRL and federated bundles in ConfigMap %s/%s",
                        namespace,
                        POLICY_CONFIG_MAP,
                    )
            except Exception as error:  # a conflict, the API server or the network
                metrics.FAILED.labels("conflict" if isinstance(error, Conflict) else "error").inc()
                _log.warning("ConfigMap %s/%s: %s", namespace, POLICY_CONFIG_MAP, error)
                return
            self._policies[namespace] = _config_map_digest(wanted["data"][POLICY].encode(), ca)
        self._inventory.clear_warnings(
            [pod.uid for pod in self._inventory.pod_certificate_pods(namespace)]
        )

    def _needs_action(self, key: Key) -> bool:
        pods, known = self._inventory.view(key)
        if known is None:
            return True
        claims = pod_claims(pods)
        if not claims:
            return False
        claim, agree, disagree = choose_claim(claims, known.claim_digest)
        if any(self._inventory.warned_reason(p.uid) != "SecretConflict" for p in disagree):
            return True  # a pod that has not been told why it gets nothing
        decision = decide(
            claim,
            known.inspection,
            known.claim_digest,
            self._ca,
            now=self._clock(),
            fraction=self._settings.renew_fraction,
            renew_requested=known.renew_requested,
        )
        return decision.action is not Action.NOTHING or not {p.uid for p in agree} <= known.owners

    def _read_ca(self, now: float) -> None:
        self._ca_read_at = now
        try:
            self._ca = self._with_federation(self._ca_service.status())
        except CAUnavailable as error:
            metrics.FAILED.labels("ca-unreachable").inc()
            _log.warning("CA status unavailable: %s", error)

    def _with_federation(self, ca: CAView | None) -> CAView | None:
        """``ca`` with the federated bundles fetched last; never one of our own trust domain."""
        if ca is None or self._federation is None:
            return ca
        files = self._federation.files()
        files.pop(federated_bundle(ca.trust_domain), None)
        return dataclasses.replace(ca, federated=files)

    def _ca_from_answer(self, answer: Answer) -> None:
        ca = self._ca
        if ca is not None and ca.bundle_sha256 != answer.bundle_sha256:
            self._ca_read_at = -float("inf")  # the CA moved on; read its state on the next tick

    def _drive_rotation(self) -> None:
        ca = self._ca
        if ca is None:
            return
        known = self._inventory.known_claimed()
        pending = sum(1 for k in known if k is None or not reflects(k.inspection, ca))
        if ca.phase != "idle" and not self._own_credential_reflects(ca):
            pending += 1
        metrics.ROTATION_PENDING.set(pending if ca.phase != "idle" else 0)
        metrics.show_rotation_phase(ca.phase)
        # A pod-certificate pod has no Secret; the signer's annotation on it says which
        # intermediate signed its certificate. It cannot be made to renew: it waits for the
        # kubelet to ask again at beginRefreshAt.
        behind = (
            self._inventory.pod_certificates_not_from(ca.intermediate_sha256)
            if needs_new_leaves(ca)
            else []
        )
        metrics.ROTATION_PENDING_PODS.set(len(behind))
        if behind:
            self._name_pods_behind(ca.phase, behind)
        if ca.phase != "idle" and not pending and not behind:
            # Every Secret and pod shows the phase; every CA signer must serve it too, or one
            # a fetch behind would sign from an intermediate the next phase stops trusting.
            pending += self._signers_behind(ca.phase)
        advance = self._gate.step(
            ca.phase,
            pending + len(behind),
            self._clock(),
            pod_certificates=bool(self._inventory.pod_certificate_namespaces()),
        )
        if advance is None:
            return
        _log.info(
            "every Secret and pod-certificate pod reflects root-rotation phase %s;"
            " advancing the CA",
            advance,
        )
        try:
            self._ca_service.rotate_root(advance)
        except CAUnavailable as error:
            _log.warning("could not advance the root rotation: %s", error)
        self._ca_read_at = -float("inf")

    def _signers_behind(self, phase: str) -> int:
        try:
            lagging = self._ca_service.signers_behind()
        except CAUnavailable as error:
            _log.warning(
                "root-rotation phase %s waits: cannot compare the CA signers: %s", phase, error
            )
            return 1
        if lagging:
            _log.info(
                "root-rotation phase %s waits for CA signers to serve the root holder's"
                " material: %s",
                phase,
                ", ".join(lagging),
            )
        return len(lagging)

    def _name_pods_behind(self, phase: str, behind: list[ClaimingPod]) -> None:
        now = self._monotonic()
        if now - self._behind_logged_at < _BEHIND_LOG_SECONDS:
            return
        self._behind_logged_at = now
        shown = ", ".join(f"{pod.namespace}/{pod.name}" for pod in behind[:10])
        more = f" and {len(behind) - 10} more" if len(behind) > 10 else ""
        _log.info(
            "root-rotation phase %s waits for %d pod-certificate pods to hold a certificate from"
            " the new intermediate (the kubelet asks at each one's beginRefreshAt): %s%s",
            phase,
            len(behind),
            shown,
            more,
        )

    def _own_credential_reflects(self, ca: CAView) -> bool:
        # The CA renews the operator's credential when its signer changes, but the kubelet may
        # take a minute to update the operator's own volume; leaving new-signing before then
        # would drop the root that the mounted credential still chains to.
        try:
            own = inspect(self._ca_service.credential())
        except OSError as error:
            _log.warning("cannot read the provisioner credential: %s", error)
            return True
        return own.problem is not None or reflects(own, ca)

    def _export_gauges(self) -> None:
        known = self._inventory.known_claimed()
        expiries = [k.inspection.not_after for k in known if k and k.inspection.not_after]
        metrics.MANAGED_SECRETS.set(len(known))
        metrics.EARLIEST_EXPIRY.set(min(expiries).timestamp() if expiries else 0)
        metrics.show_secrets(self._secret_certificates())

    def _secret_certificates(self) -> list[metrics.SecretCertificate]:
        rows = []
        for key in self._inventory.claimed_keys():
            pods, secret = self._inventory.view(key)
            claim = next((pod.claim for pod in pods if pod.claim is not None), None)
            found = secret.inspection if secret is not None else None
            if found is None or claim is None or not found.not_before or not found.not_after:
                continue
            rows.append(
                metrics.SecretCertificate(
                    namespace=key[0],
                    secret=key[1],
                    identity=claim.names[0],
                    serial=found.serial,
                    not_before=found.not_before.timestamp(),
                    not_after=found.not_after.timestamp(),
                )
            )
        return rows

    def _failed(self, key: Key, reason: str, event_reason: str | None, message: str) -> None:
        delay = self._retries.failed(key, self._monotonic())
        metrics.FAILED.labels(reason).inc()
        _log.warning("Secret %s/%s: %s; retrying in %.0f s", *key, reason, delay)
        if event_reason is None:
            return
        for pod in self._inventory.pods_for(key):
            self._warn_once(pod.ref, event_reason, message)

    def _warn_once(self, pod: Mapping[str, Any], reason: str, message: str) -> None:
        uid = pod.get("metadata", {}).get("uid", "")
        if not self._inventory.first_warning(uid, reason, message):
            return
        _log.warning(
            "pod %s/%s: %s: %s",
            pod["metadata"].get("namespace"),
            pod["metadata"].get("name"),
            reason,
            message,
        )
        self._cluster.event(pod, type="Warning", reason=reason, message=message)


def _managed(body: Mapping[str, Any]) -> bool:
    """Only exactly ``hello-mtls.dev/managed=true`` marks a Secret or ConfigMap as ours (the
    label selector of the operator's watch says the same); any other value is someone else's."""
    return (body["metadata"].get("labels") or {}).get(LABEL_MANAGED) == "true"


def _config_map_digest(policy: bytes, ca: CAView) -> bytes:
    """What a namespace's ConfigMap was last written with: its policy, CRL and federated
    bundles."""
    return b"\0".join((policy, sha256_hex(ca.crl_pem).encode(), ca.federated_sha256.encode()))
