"""Keeps one Secret per claimed identity right: issue, renew, heal, refresh trust, rotate.
Pods in pod-certificate mode have no Secret: their namespace's TLS-policy ConfigMap is
`policy_config_maps`' job; moving the CA's root rotation on is `rotation_driver`'s.

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

from mtls_context.layout import federated_bundle
from mtls_contract.ca_api import SignAnswer
from mtls_contract.marks import ANNOTATION_BUNDLE, ANNOTATION_VERSION, POD_CERTIFICATE
from mtls_operator import metrics
from mtls_operator.bundle_fetcher import FederatedBundles
from mtls_operator.ca_view import CAView
from mtls_operator.certs import new_key_and_csr
from mtls_operator.claims import Claim, ClaimingPod, claim_moved, parse_claim
from mtls_operator.decisions import Action, Decision, choose_claim, decide
from mtls_operator.inventory import Inventory, Key
from mtls_operator.pod_certificates import certificate_intermediate
from mtls_operator.policy_config_maps import PolicyConfigMaps
from mtls_operator.ports import CARefused, CAService, CAUnavailable, Cluster, Conflict
from mtls_operator.retries import Retries
from mtls_operator.rotation_driver import RotationDriver
from mtls_operator.settings import Settings
from mtls_operator.tlssecret import is_managed, merge_owners, refreshed_data, secret_body

__all__ = ["Reconciler"]

"""Set on pods after their Secret changed: the kubelet then refreshes the volume in seconds."""

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
        self._rotation = RotationDriver(
            ca_service,
            self._inventory,
            grace=settings.rotation_grace,
            clock=clock,
            monotonic=monotonic,
        )
        self._ca: CAView | None = None
        self._ca_read_at = -float("inf")
        self._resynced_at = -float("inf")
        self._dispatch = dispatch or self.reconcile
        self._policy_config_maps = PolicyConfigMaps(
            cluster, self._inventory, labels=settings.labels, warn=self._warn_once
        )
        self._signer_name = signer_name
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
            # Only with the signer on (`claims.parse_claim` refuses the mode otherwise).
            self._policy_config_maps.pod_seen(pod, first_seen, self._ca)
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
            if self._settings.rules.pod_certificates:
                self._policy_config_maps.resync(self._ca)
            self._export_gauges()
        if self._ca is not None and self._rotation.drive(self._ca):
            self._ca_read_at = -float("inf")  # the CA moved on; read its state on the next tick

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
        claim, agree, disagree = choose_claim(pods, known.claim_digest if known else None)
        if secret is not None and not is_managed(secret):
            for pod in pods:
                self._warn_once(
                    pod.ref,
                    "SecretNotManaged",
                    f"Secret '{key[1]}' exists and is not managed by hello-mtls; it is left alone:"
                    " delete it or give the pod another hello-mtls.dev/secret",
                )
            return
        for loser in disagree:
            asks = ", ".join(loser.claim.names if loser.claim else ())
            self._warn_once(
                loser.ref,
                "SecretConflict",
                f"Secret '{claim.secret}' serves {', '.join(claim.names)} for pod"
                f" '{agree[0].name}'; this pod asks for {asks} and gets"
                " no certificate of its own: give it another hello-mtls.dev/secret",
            )
        owners = [p.ref for p in agree]
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

    def _needs_action(self, key: Key) -> bool:
        pods, known = self._inventory.view(key)
        if known is None:
            return True
        if not any(p.claim for p in pods):
            return False
        claim, agree, disagree = choose_claim(pods, known.claim_digest)
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

    def _ca_from_answer(self, answer: SignAnswer) -> None:
        ca = self._ca
        if ca is not None and ca.bundle_sha256 != answer.bundle_sha256:
            self._ca_read_at = -float("inf")  # the CA moved on; read its state on the next tick

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
