"""Scenarios 4 and 5: certificates that change under continuous traffic, at the same time.

One set of workloads, started together, carries three claims; running them side by side keeps the
Helm pass to the longest of them (the kubelet's refresh of a pod certificate) instead of the sum:

* renewal (namespace ``renewal``): a server and a client with 3-minute certificates, which the
  operator renews at 2/3 of their lifetime and the apps reload without a restart; the client makes
  a request every 0.5 s for 10 minutes and exits 1 if any failed.
* root rotation across both modes: an administrator starts it (``hello-mtls-ca rotate-root --from
  idle``) as soon as the workloads run; the operator moves the CA through both-trusted and
  new-signing back to idle, each step only after every managed Secret and every pod-certificate pod
  shows the phase. A Secret-mode server is called by a pod-certificate client (namespace
  ``secret-server``) and a pod-certificate server by a Secret-mode client (``pod-cert-server``);
  no request may fail, and every bundle ends with only the new root, the ClusterTrustBundle and
  the files in the pods included.
* pod-certificate refresh: the pod-certificate pods ask for 1-hour certificates, the API's
  minimum, and the Helm pass installs with ``podCertificates.refreshFraction`` 0.1, which the API
  raises to beginRefreshAt = notBefore + 10 minutes; the kubelet asks again between then and 5
  minutes later. Those new certificates are the ones from the new intermediate that let the
  rotation finish (about 12 to 18 minutes after the start, with the 2 minutes the operator gives
  the kubelet to put them into the pods), and the server must serve its new one
  without a restart.

Without the pod-certificate signer (an install or a cluster without it) both cross-mode pairs run
in Secret mode and the refresh claim is skipped with the reason.
"""

from __future__ import annotations

import base64
import datetime
import functools
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from harness.waiting import wait_until
from mtls_contract.marks import ANNOTATION_INTERMEDIATE, POD_CERTIFICATE, SECRET_MODE
from support.cluster_api import (
    apply,
    dump_namespace,
    kubectl,
    kubectl_json,
    log,
)
from support.operator_workloads import (
    ca_cli,
    ca_status,
    client_lines,
    client_pod,
    finished,
    generations_without_failure,
    phase,
    restart_counts,
    rollout,
    secret_inspection,
    server,
)
from support.pods import CERT_DIR

SIGNER = "hello-mtls.dev/pod-certificate"
BUNDLE = SIGNER.replace("/", ":") + ":roots"
RENEWAL_REQUESTS = 1200  # x 0.5 s = 10 minutes of traffic
ROTATION_REQUESTS = 2400  # x 0.5 s = at most 20 minutes; stopped once the rotation is over
INTERVAL = 0.5
# The setup and 10 minutes of traffic, or the rotation's wait for the kubelet's refresh.
pytestmark = [
    pytest.mark.timeout(22 * 60),
    pytest.mark.long_running(
        "10 minutes of renewals, the rotation waits for the kubelet's refresh"
    ),
]


@dataclass
class Traffic:
    """The running workloads and what was true when the rotation started."""

    renewal: str
    secret_server: str  # a Secret-mode server, called by a pod-certificate client
    pod_cert_server: str  # a pod-certificate server, called by a Secret-mode client
    pod_certificates: bool
    old_root: str
    first_requests: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """(namespace, pod) -> the first PodCertificateRequest answered for it (pod-certificate
    pods; both namespaces have a pod ``client``)."""


@pytest.fixture(scope="module")
def traffic(request: pytest.FixtureRequest, installed: str) -> Iterator[Traffic]:
    names = [f"e2e-{part}-{secrets.token_hex(3)}" for part in ("renewal", "secret-server", "pc")]
    names[2] = names[2].replace("-pc-", "-pod-cert-server-")
    for name in names:
        kubectl("create", "namespace", name)
        log(f"namespace {name}")
    failed_before = request.session.testsfailed
    try:
        yield _start(*names)
    finally:
        if request.session.testsfailed > failed_before:
            for name in names:
                dump_namespace(name)
        for name in names:
            kubectl("delete", "namespace", name, "--wait=false", check=False)


def _start(renewal: str, secret_server: str, pod_cert_server: str) -> Traffic:
    pod_certificates = bool(
        kubectl("get", "clustertrustbundle", BUNDLE, "--ignore-not-found", "-o", "name")
    )
    cross_mode = POD_CERTIFICATE if pod_certificates else SECRET_MODE
    log(f"pod-certificate pods: {'yes' if pod_certificates else 'no, the signer is off'}")
    apply(server(renewal, duration="3m"), renewal)
    apply(server(secret_server), secret_server)
    apply(server(pod_cert_server, mode=cross_mode, duration="1h"), pod_cert_server)
    for namespace in (renewal, secret_server, pod_cert_server):
        rollout("hello", namespace, timeout=240)
    apply(client_pod(renewal, count=RENEWAL_REQUESTS, interval=INTERVAL, duration="3m"), renewal)
    apply(
        client_pod(
            secret_server,
            count=ROTATION_REQUESTS,
            interval=INTERVAL,
            duration="1h",
            mode=cross_mode,
        ),
        secret_server,
    )
    apply(client_pod(pod_cert_server, count=ROTATION_REQUESTS, interval=INTERVAL), pod_cert_server)
    for namespace in (renewal, secret_server, pod_cert_server):
        wait_until(
            f"the client in {namespace} to run",
            functools.partial(_client_running, namespace),
            timeout=180,
        )
    traffic = Traffic(
        renewal, secret_server, pod_cert_server, pod_certificates, old_root=_only_root()
    )
    if pod_certificates:
        for namespace in (secret_server, pod_cert_server):
            for pod, issued in _issued_requests(namespace).items():
                traffic.first_requests[namespace, pod] = issued
        log(
            "first pod certificates refresh at "
            + ", ".join(
                f"{namespace}/{pod}: {r['status']['beginRefreshAt']}"
                for (namespace, pod), r in sorted(traffic.first_requests.items())
            )
        )
    ca_cli("rotate-root", "--from", "idle")
    return traffic


def test_renewal_under_traffic_fails_no_request(traffic: Traffic) -> None:
    server_serials, client_serials = generations_without_failure(
        traffic.renewal, requests=RENEWAL_REQUESTS, timeout=15 * 60
    )
    # 10 minutes of 3-minute certificates renewed at 2/3 of their (backdated) lifetime: at
    # least four generations of each, every one used without a restart (the root rotation
    # that runs meanwhile re-issues each once: two without any renewal).
    assert len(server_serials) >= 4, server_serials
    assert len(client_serials) >= 4, client_serials


def test_root_rotation_under_traffic_in_both_modes(traffic: Traffic) -> None:
    def back_to_idle() -> dict[str, Any] | None:
        status = ca_status()
        return status if status["phase"] == "idle" else None

    seen = wait_until("the rotation back to idle", back_to_idle, timeout=20 * 60, interval=5)
    new_roots = [root["fingerprint_sha256"] for root in seen["roots"]]
    assert len(new_roots) == 1 and new_roots != [traffic.old_root]
    intermediate = seen["signing"]["intermediate_fingerprint_sha256"]

    pairs = (traffic.secret_server, traffic.pod_cert_server)
    # Traffic past the end of the rotation: 20 more requests after idle (the module's teardown
    # stops the clients with their namespaces).
    after = {namespace: len(client_lines(namespace)) for namespace in pairs}
    for namespace in pairs:
        wait_until(
            f"20 requests in {namespace} after the rotation",
            functools.partial(_client_made, namespace, after[namespace] + 20),
            timeout=120,
            interval=5,
        )
        assert finished("client", namespace) is None, "the client stopped before the end"
        lines = client_lines(namespace)
        failed = [line for line in lines if line.get("error")]
        assert failed == [], f"{len(failed)} of {len(lines)} failed in {namespace}: {failed[:3]}"
        assert {line["body"] for line in lines} == {f"Hello, client.{namespace}.svc!"}

    # Every bundle holds only the new root: Secrets, the ClusterTrustBundle, the pods' files.
    secret_mode = [(traffic.secret_server, "hello-tls"), (traffic.pod_cert_server, "client-tls")]
    if not traffic.pod_certificates:
        secret_mode += [
            (traffic.secret_server, "client-tls"),
            (traffic.pod_cert_server, "hello-tls"),
        ]
    for namespace, name in secret_mode:

        def only_new_root(namespace: str = namespace, name: str = name) -> Any:
            found = secret_inspection(name, namespace)
            return found if found is not None and _roots(found[1]) == new_roots else None

        inspection, _ = wait_until(f"{name} with only the new root", only_new_root, timeout=120)
        assert inspection.problem is None and inspection.intermediate_sha256 == intermediate
    if traffic.pod_certificates:
        bundle = kubectl_json("get", "clustertrustbundle", BUNDLE)["spec"]["trustBundle"]
        assert _fingerprints(bundle) == new_roots
        # The kubelet copies the bundle into the pods on its next resync (about a minute).
        pods = _pod_certificate_pods(traffic)
        for namespace, pod in pods:
            wait_until(
                f"{namespace}/{pod} to see only the new root",
                functools.partial(_pod_trusts_only, namespace, pod, new_roots),
                timeout=150,
                interval=10,
            )
        annotations = {
            pod: kubectl_json("get", "pod", pod, "-n", namespace)["metadata"]["annotations"]
            for namespace, pod in pods
        }
        assert {pod: a.get(ANNOTATION_INTERMEDIATE) for pod, a in annotations.items()} == {
            pod: intermediate for pod in annotations
        }


def test_pod_certificates_are_refreshed_at_begin_refresh_at_and_served_without_restart(
    traffic: Traffic,
) -> None:
    if not traffic.pod_certificates:
        pytest.skip("the install has podCertificates.enabled off: no pod certificates")
    # The rotation test waited for each pod's next certificate. The Secret-mode client logs the
    # serials the pod-certificate server presented to it, the pod-certificate client its own.
    used = {
        traffic.pod_cert_server: {
            line["server_serial"] for line in client_lines(traffic.pod_cert_server)
        },
        traffic.secret_server: {
            line["client_serial"] for line in client_lines(traffic.secret_server)
        },
    }
    for namespace in (traffic.secret_server, traffic.pod_cert_server):
        pods = [pod for (where, pod) in traffic.first_requests if where == namespace]
        assert pods, namespace
        server_olds = set()
        for pod in pods:
            first = traffic.first_requests[namespace, pod]
            later = _first_refresh(namespace, pod, first)
            begin = _time(first["status"]["beginRefreshAt"])
            asked = _time(later["metadata"]["creationTimestamp"])
            # The kubelet asked again at beginRefreshAt (it adds up to 5 minutes), not before.
            assert begin <= asked <= begin + datetime.timedelta(minutes=7), (pod, begin, asked)
            old, new = _serial(first), _serial(later)
            assert old != new
            if pod == "client":  # it presented the old one, and the new one on its next connections
                assert old in used[namespace], (pod, old, used[namespace])
                assert new in used[namespace], (pod, new, used[namespace])
                continue
            server_olds.add(old)
            # The client keeps its connections: a new one to the pod gets the new one.
            wait_until(
                f"{namespace}/{pod} to serve {new}",
                functools.partial(_serves, namespace, pod, new),
                timeout=150,
                interval=10,
            )
        # The client keeps its keep-alive connections, and the Service may have sent all of them
        # to one of the two server replicas: the old certificate of at least one was used (each
        # pod's new one is checked on a new connection above).
        assert not server_olds or server_olds & used[namespace], (server_olds, used[namespace])
        counts = restart_counts(namespace)
        assert counts and set(counts) == {0}


def _serves(namespace: str, pod: str, serial: str) -> bool:
    """Whether a new connection to ``pod`` (its own probe, on loopback) gets ``serial``."""
    probe = ["hello-mtls-server", "--probe", "--bind=0.0.0.0:8443", f"--cert-dir={CERT_DIR}"]
    out = kubectl("exec", "-n", namespace, pod, "--", *probe)  # healthy: ..., serving serial X
    return format(int(out.split("serving serial ")[1].strip(), 16), "x") == serial


def _client_running(namespace: str) -> bool:
    return phase("client", namespace) == "Running"


def _client_made(namespace: str, requests: int) -> bool:
    return len(client_lines(namespace)) >= requests


def _pod_trusts_only(namespace: str, pod: str, roots: list[str]) -> bool:
    return _fingerprints(_pod_file(namespace, pod, "ca.crt")) == roots


def _only_root() -> str:
    status = ca_status()
    assert status["phase"] == "idle", status
    (root,) = status["roots"]
    return str(root["fingerprint_sha256"])


def _issued_requests(namespace: str) -> dict[str, dict[str, Any]]:
    """Pod name -> its newest Issued PodCertificateRequest in ``namespace``."""
    newest: dict[str, dict[str, Any]] = {}
    for item in kubectl_json("get", "podcertificaterequests", "-n", namespace)["items"]:
        conditions = item.get("status", {}).get("conditions", [])
        if [c["type"] for c in conditions] != ["Issued"]:
            continue
        pod = item["spec"]["podName"]
        known = newest.get(pod)
        if known is None or known["status"]["notBefore"] < item["status"]["notBefore"]:
            newest[pod] = item
    return newest


def _first_refresh(namespace: str, pod: str, first: dict[str, Any]) -> dict[str, Any]:
    """The Issued request the kubelet made for ``pod`` after ``first`` (the earliest such)."""
    later = [
        item
        for item in kubectl_json("get", "podcertificaterequests", "-n", namespace)["items"]
        if item["spec"]["podName"] == pod
        and item["metadata"]["uid"] != first["metadata"]["uid"]
        and [c["type"] for c in item.get("status", {}).get("conditions", [])] == ["Issued"]
    ]
    assert later, f"{namespace}/{pod}: the kubelet asked for no new certificate"
    return min(later, key=lambda item: item["metadata"]["creationTimestamp"])


def _pod_certificate_pods(traffic: Traffic) -> list[tuple[str, str]]:
    servers = kubectl_json("get", "pods", "-n", traffic.pod_cert_server, "-l", "app=hello")
    return [(traffic.pod_cert_server, p["metadata"]["name"]) for p in servers["items"]] + [
        (traffic.secret_server, "client")
    ]


def _pod_file(namespace: str, pod: str, name: str) -> str:
    return kubectl("exec", "-n", namespace, pod, "--", "cat", f"{CERT_DIR}/{name}")


def _serial(request: dict[str, Any]) -> str:
    chain = request["status"]["certificateChain"].encode()
    return format(x509.load_pem_x509_certificates(chain)[0].serial_number, "x")


def _time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _fingerprints(pem: str | bytes) -> list[str]:
    data = pem.encode() if isinstance(pem, str) else pem
    return [c.fingerprint(hashes.SHA256()).hex() for c in x509.load_pem_x509_certificates(data)]


def _roots(secret: dict[str, Any]) -> list[str]:
    return _fingerprints(base64.b64decode(secret["data"]["ca.crt"]))
