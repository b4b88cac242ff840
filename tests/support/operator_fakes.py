"""Fast stand-ins for the operator's unit tests: an in-memory API server (Secrets, ConfigMaps,
Leases, and the PodCertificateRequests and ClusterTrustBundles of the signer), and the CA's HTTP
API in process on the real CA core. The real API server and CA service are exercised by the
integration and e2e tiers."""

from __future__ import annotations

import base64
import copy
import datetime
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

from cryptography import x509

from mtls_ca import authority, sign_request
from mtls_ca.state import State
from mtls_ca.tls_profiles import policy_bytes
from mtls_contract import identities
from mtls_contract.ca_api import SignAnswer, parse_sign_answer
from mtls_contract.marks import ANNOTATION_MODE, ANNOTATION_NAME, POD_CERTIFICATE
from mtls_operator.ca_view import CAView
from mtls_operator.ports import CARefused, CAUnavailable, Conflict, Forbidden, Invalid

UTC = datetime.UTC
POD_CERTIFICATE_CLAIM = {ANNOTATION_NAME: "web.shop.svc", ANNOTATION_MODE: POD_CERTIFICATE}
"""The annotations of a pod-certificate pod in namespace ``shop``, as `PodCertificateRequests`
stores the pod of a request unless told otherwise."""


class Cluster:
    """Secrets and ConfigMaps with resourceVersions and 409s, pod annotations and Events, in
    memory."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.config_maps: dict[tuple[str, str], dict[str, Any]] = {}
        self.annotations: dict[tuple[str, str], dict[str, str]] = {}
        self.events: list[tuple[str, str, str, str]] = []
        self.writes = 0
        self._versions = itertools.count(1)

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.secrets.get((namespace, name))
        return copy.deepcopy(found) if found else None

    def create_secret(self, body: dict[str, Any]) -> dict[str, Any]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if key in self.secrets:
            raise Conflict("exists")
        return self._store(self.secrets, key, body)

    def replace_secret(self, body: dict[str, Any]) -> dict[str, Any]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if self.secrets[key]["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
            raise Conflict("changed")
        return self._store(self.secrets, key, body)

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.config_maps.get((namespace, name))
        return copy.deepcopy(found) if found else None

    def create_config_map(self, body: dict[str, Any]) -> dict[str, Any]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if key in self.config_maps:
            raise Conflict("exists")
        return self._store(self.config_maps, key, body)

    def replace_config_map(self, body: dict[str, Any]) -> dict[str, Any]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        stored = self.config_maps[key]["metadata"]["resourceVersion"]
        if stored != body["metadata"]["resourceVersion"]:
            raise Conflict("changed")
        return self._store(self.config_maps, key, body)

    def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> bool:
        self.annotations.setdefault((namespace, name), {}).update(annotations)
        return True

    def event(self, pod: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
        self.events.append((pod["metadata"]["name"], type, reason, message))

    def _store(
        self,
        objects: dict[tuple[str, str], dict[str, Any]],
        key: tuple[str, str],
        body: dict[str, Any],
    ) -> dict[str, Any]:
        self.writes += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        objects[key] = stored
        return copy.deepcopy(stored)


class Leases:
    """Leases in memory with resourceVersions and 409s, as the API server keeps them; while
    ``down`` every call fails as if the API server could not be reached."""

    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.down = False
        self._versions = itertools.count(1)

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._reach()
        found = self.leases.get((namespace, name))
        return copy.deepcopy(found) if found else None

    def create_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        self._reach()
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if key in self.leases:
            raise Conflict("exists")
        return self._store(key, body)

    def replace_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        self._reach()
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if self.leases[key]["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
            raise Conflict("changed")
        return self._store(key, body)

    def _reach(self) -> None:
        if self.down:
            raise ConnectionRefusedError("connection refused")

    def _store(self, key: tuple[str, str], body: dict[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        self.leases[key] = stored
        return copy.deepcopy(stored)


class CA:
    """The CA's HTTP API in process, on the real CA core (`mtls_ca.state.State`)."""

    def __init__(self) -> None:
        self.state = State(generations=(authority.CA.create(),))
        self.signed = 0
        self.down = False
        self.mounted_credential: dict[str, bytes] = {}
        self.lagging_signers: list[str] = []
        """CA signer pods that serve an older material than the root holder."""

    def sign(self, request: Mapping[str, Any]) -> SignAnswer:
        if self.down:
            raise CAUnavailable("connection refused")
        self.signed += 1
        try:
            issued = sign_request.sign(
                self.state, sign_request.parse(request), role=identities.PROVISIONER
            )
        except sign_request.Malformed as error:
            raise CARefused(f"HTTP 400: {error}", 400) from None
        except sign_request.RuleViolation as error:
            raise CARefused(f"HTTP 403: {error}", 403) from None
        return parse_sign_answer(sign_request.answer(self.state, issued))

    def status(self) -> CAView:
        if self.down:
            raise CAUnavailable("connection refused")
        status = self.state.status()
        return CAView(
            intermediate_sha256=status["signing"]["intermediate_fingerprint_sha256"],
            bundle_pem=self.state.bundle_pem,
            bundle_sha256=self.state.bundle_sha256,
            tls_policy=self.state.tls_policy,
            phase=self.state.phase,
            trust_domain=self.state.trust_domain,
        )

    def rotate_root(self, from_phase: str) -> None:
        self.state = self.state.rotated(expected=from_phase)

    def signers_behind(self) -> list[str]:
        if self.down:
            raise CAUnavailable("connection refused")
        return list(self.lagging_signers)

    def credential(self) -> dict[str, bytes]:
        return self.mounted_credential

    def issue_credential(self) -> dict[str, bytes]:
        """A provisioner credential from the current signer, in the Secret layout."""
        issued = self.state.signer.issue(
            uris=["spiffe://cluster.local/hello-mtls/provisioner/operator"],
            common_name="operator",
            valid_for=datetime.timedelta(days=7),
            client_only=True,
        )
        assert issued.key_pem is not None
        return {
            "tls.crt": issued.chain_pem,
            "tls.key": issued.key_pem,
            "ca.crt": self.state.bundle_pem,
            "tls-policy.json": policy_bytes(self.state.tls_policy),
        }


class Clock:
    def __init__(self) -> None:
        self.now = datetime.datetime.now(UTC)
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=seconds)
        self.mono += seconds


def pod(
    name: str, annotations: dict[str, str], *, ns: str = "shop", sa: str = "web"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": f"uid-{name}",
            "creationTimestamp": f"2026-01-01T00:00:0{len(name) % 10}Z",
            "annotations": annotations,
        },
        "spec": {"serviceAccountName": sa},
    }


class PodCertificateRequests:
    """PodCertificateRequests, ClusterTrustBundles and pod annotations in memory, checked like
    the API server.

    A status write is refused the way kube-apiserver refuses it (`ports.Invalid`, 422): a final
    status is immutable; exactly one Issued, Denied or Failed condition with a reason and a
    lastTransitionTime; Denied and Failed carry nothing else; an Issued chain is for the
    requested key, with notBefore/notAfter equal to the leaf's, notBefore within 5 minutes of
    now, a lifetime within [1h, maxExpirationSeconds] and beginRefreshAt inside [notBefore+10m,
    notAfter-10m].
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self.requests: dict[tuple[str, str], dict[str, Any]] = {}
        self.bundles: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, str, str, str]] = []
        self.pods: dict[tuple[str, str], str] = {}  # (namespace, name) -> UID
        self.claims: dict[tuple[str, str], dict[str, str]] = {}  # the pods' own annotations
        self.annotations: dict[tuple[str, str], dict[str, str]] = {}  # the ones the signer wrote
        self.pods_down = False  # pod patches fail as if the API server were away
        self.pods_forbidden: set[str] = set()  # namespaces where RBAC refuses pod patches
        self.status_writes = 0
        self.bundle_writes = 0
        self.clock = clock or Clock()
        self._versions = itertools.count(1)

    def add(self, pcr: dict[str, Any], claim: dict[str, str] | None = None) -> dict[str, Any]:
        """Store the kubelet's request ``pcr``. Its pod exists (the API server checks that),
        annotated ``claim`` (`POD_CERTIFICATE_CLAIM` unless told otherwise or known already)."""
        pod = (pcr["metadata"]["namespace"], pcr["spec"]["podName"])
        self.pods.setdefault(pod, pcr["spec"]["podUID"])
        if claim is not None:
            self.claims[pod] = claim
        self.claims.setdefault(pod, POD_CERTIFICATE_CLAIM)
        pcr = copy.deepcopy(pcr)
        pcr["metadata"]["resourceVersion"] = str(next(self._versions))
        self.requests[(pcr["metadata"]["namespace"], pcr["metadata"]["name"])] = pcr
        return copy.deepcopy(pcr)

    def list_requests(self, signer_name: str) -> tuple[list[dict[str, Any]], str]:
        items = [
            copy.deepcopy(p)
            for p in self.requests.values()
            if p["spec"]["signerName"] == signer_name
        ]
        return items, str(next(self._versions))

    def watch_requests(
        self, signer_name: str, resource_version: str
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        return iter(())

    def get_request(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.requests.get((namespace, name))
        return copy.deepcopy(found) if found else None

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        key = (namespace, name)
        if key not in self.pods:
            return None
        annotations = {**self.claims.get(key, {}), **self.annotations.get(key, {})}
        return {
            "metadata": {
                "namespace": namespace,
                "name": name,
                "uid": self.pods[key],
                "annotations": annotations,
            }
        }

    def update_request_status(self, body: dict[str, Any]) -> bool:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        stored = self.requests.get(key)
        if stored is None:
            return False
        if stored["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
            raise Conflict("changed")
        problems = status_problems(stored, body["status"], self.clock.now)
        if problems:
            raise Invalid("; ".join(problems))
        self.status_writes += 1
        stored["status"] = copy.deepcopy(body["status"])
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        return True

    def annotate_pod(
        self, namespace: str, name: str, uid: str, annotations: Mapping[str, str]
    ) -> bool:
        if self.pods_down:
            raise OSError("connection refused")
        if namespace in self.pods_forbidden:
            raise Forbidden(f'pods "{name}" is forbidden: cannot patch resource "pods"')
        if self.pods.get((namespace, name)) != uid:
            return False  # gone, or another pod of that name (a UID in a patch is a precondition)
        self.annotations.setdefault((namespace, name), {}).update(annotations)
        return True

    def get_trust_bundle(self, name: str) -> dict[str, Any] | None:
        found = self.bundles.get(name)
        return copy.deepcopy(found) if found else None

    def create_trust_bundle(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        if name in self.bundles:
            raise Conflict("exists")
        signer = body["spec"]["signerName"]
        assert name.startswith(signer.replace("/", ":") + ":"), name
        return self._store_bundle(body)

    def replace_trust_bundle(self, body: dict[str, Any]) -> dict[str, Any]:
        current = self.bundles[body["metadata"]["name"]]
        if current["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
            raise Conflict("changed")
        return self._store_bundle(body)

    def event(self, pod: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
        self.events.append((pod["metadata"]["name"], type, reason, message))

    def _store_bundle(self, body: dict[str, Any]) -> dict[str, Any]:
        self.bundle_writes += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        self.bundles[body["metadata"]["name"]] = stored
        return copy.deepcopy(stored)


def status_problems(
    pcr: Mapping[str, Any], status: Mapping[str, Any], now: datetime.datetime
) -> list[str]:
    """What kube-apiserver's PodCertificateRequest status validation would refuse."""
    if any(
        c.get("type") in ("Issued", "Denied", "Failed")
        for c in (pcr.get("status") or {}).get("conditions") or []
    ):
        return ["status is immutable once Issued, Denied or Failed"]
    conditions = status.get("conditions") or []
    final = [c for c in conditions if c.get("type") in ("Issued", "Denied", "Failed")]
    problems = []
    if len(conditions) != 1 or len(final) != 1:
        return ["exactly one Issued, Denied or Failed condition"]
    condition = final[0]
    if condition.get("status") != "True" or not condition.get("reason"):
        problems.append("condition needs status True and a reason")
    if not condition.get("lastTransitionTime"):
        problems.append("condition needs a lastTransitionTime")
    if condition["type"] != "Issued":
        if set(status) != {"conditions"}:
            problems.append("Denied or Failed: only conditions may be set")
        return problems
    certs = x509.load_pem_x509_certificates(status["certificateChain"].encode())
    leaf = certs[0]
    spec = pcr["spec"]
    requested = x509.load_der_x509_csr(base64.b64decode(spec["stubPKCS10Request"])).public_key()
    if leaf.public_key() != requested:
        problems.append("leaf is not for the requested key")

    def parse(field: str) -> datetime.datetime:
        return datetime.datetime.strptime(status[field], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)

    not_before, not_after, refresh = parse("notBefore"), parse("notAfter"), parse("beginRefreshAt")
    if not_before != leaf.not_valid_before_utc or not_after != leaf.not_valid_after_utc:
        problems.append("notBefore/notAfter differ from the leaf's")
    if abs(not_before - now) > datetime.timedelta(minutes=5):
        problems.append("notBefore is more than 5 minutes from now")
    lifetime = not_after - not_before
    maximum = datetime.timedelta(seconds=spec.get("maxExpirationSeconds", 86400))
    if not datetime.timedelta(hours=1) <= lifetime <= maximum:
        problems.append(f"lifetime {lifetime} outside [1h, {maximum}]")
    margin = datetime.timedelta(minutes=10)
    if not not_before + margin <= refresh <= not_after - margin:
        problems.append("beginRefreshAt outside [notBefore+10m, notAfter-10m]")
    return problems
