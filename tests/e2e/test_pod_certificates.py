"""Pod-certificate mode (``hello-mtls.dev/mode: pod-certificate``, Kubernetes 1.35+): the kubelet
makes the pod's key in memory and asks our operator, the signer, through a PodCertificateRequest;
the wiring policy mounts the kubelet's projected volume where the libraries read, so the example
server and client run unchanged and talk to Secret-mode peers.

Needs the chart's ``podCertificates.enabled`` (the Helm pass sets it; ``k8s/`` renders the
defaults, where it is off, so the kubectl pass skips these scenarios with that reason).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from harness.waiting import wait_until
from mtls_contract.marks import ANNOTATION_INTERMEDIATE, POD_CERTIFICATE, SECRET_MODE
from support.cluster_api import PRODUCT_NAMESPACE, apply, kubectl, kubectl_json, log
from support.key_scan import everything_but_secrets, needles, secret_texts
from support.operator_workloads import client_lines, client_pod, finished, rollout, server
from support.pods import CERT_DIR

SIGNER = "hello-mtls.dev/pod-certificate"
pytestmark = pytest.mark.alone(
    "compares the pods' bundle and intermediate with a Secret's: a root rotation beside it"
    " (test_operator_renewal_and_rotation.py) changes them at different moments"
)


@pytest.fixture
def signer(installed: str) -> Iterator[str]:
    """The signer name, when the installed product signs pod certificates."""
    role = kubectl(
        "get",
        "clusterrole",
        "hello-mtls-pod-certificate-signer",
        "--ignore-not-found",
        "-o",
        "name",
    )
    if not role:
        pytest.skip("the install has podCertificates.enabled off (k8s/ renders the defaults)")
    yield SIGNER


def _hello(namespace: str, *, server_mode: str, client_mode: str) -> list[dict[str, Any]]:
    """A server and a bounded client in the given modes; the client's JSON lines."""
    apply(server(namespace, mode=server_mode), namespace)
    rollout("hello", namespace, timeout=240)
    apply(client_pod(namespace, count=5, interval=1.0, mode=client_mode), namespace)
    phase = wait_until("the client to finish", lambda: finished("client", namespace), timeout=240)
    lines = client_lines(namespace)
    assert phase == "Succeeded", lines
    return lines


def _blocks(pem: str) -> set[str]:
    """The certificates of a PEM bundle, whatever their order and spacing."""
    return {"".join(b.split()) for b in pem.split("-----END CERTIFICATE-----") if b.strip()}


def _kubelet_files(namespace: str, deployment: str) -> dict[str, str]:
    """The certificate files a running pod of ``deployment`` sees."""
    return {
        name: kubectl(
            "exec", "-n", namespace, f"deploy/{deployment}", "--", "cat", f"{CERT_DIR}/{name}"
        )
        for name in ("tls.key", "tls.crt", "ca.crt", "tls-policy.json")
    }


def test_a_secret_mode_client_says_hello_to_a_pod_certificate_server(
    signer: str, namespace: str
) -> None:
    lines = _hello(namespace, server_mode=POD_CERTIFICATE, client_mode=SECRET_MODE)
    assert [line["status"] for line in lines] == [200] * 5
    assert {line["body"] for line in lines} == {f"Hello, client.{namespace}.svc!"}

    files = _kubelet_files(namespace, "hello")
    assert "PRIVATE KEY" in files["tls.key"] and files["tls.crt"].count("BEGIN CERTIFICATE") == 2
    # The bundle and the TLS policy are the ones a Secret-mode pod gets (the client's Secret).
    client = kubectl_json("get", "secret", "client-tls", "-n", namespace)["data"]
    assert _blocks(files["ca.crt"]) == _blocks(base64.b64decode(client["ca.crt"]).decode())
    assert files["tls-policy.json"] == base64.b64decode(client["tls-policy.json"]).decode()
    # No Secret was made for the server: its key exists only in the kubelet and the pod.
    assert not kubectl(
        "get", "secret", "hello-tls", "-n", namespace, "--ignore-not-found", "-o", "name"
    )
    requests = kubectl_json("get", "podcertificaterequests", "-n", namespace)["items"]
    assert requests and all(r["spec"]["signerName"] == signer for r in requests)
    assert {c["type"] for r in requests for c in r["status"]["conditions"]} == {"Issued"}
    # Each server pod says which intermediate signed its certificate: the root rotation's gate
    # reads it there (the requests are deleted after 15 minutes).
    intermediate = x509.load_pem_x509_certificates(files["tls.crt"].encode())[1]
    servers = kubectl_json("get", "pods", "-n", namespace, "-l", "app=hello")["items"]
    assert {p["metadata"]["annotations"].get(ANNOTATION_INTERMEDIATE) for p in servers} == {
        intermediate.fingerprint(hashes.SHA256()).hex()
    }

    # The key scan: no fragment of the server's key in any Secret, PodCertificateRequest,
    # ConfigMap, Event, annotation or log.
    fragments = needles(files["tls.key"])
    assert fragments, "no key fragment to look for"
    log(f"scanning the API for {len(fragments)} fragments of the pod-held key")
    haystack = everything_but_secrets([PRODUCT_NAMESPACE, namespace])
    haystack += "\n".join(secret_texts().values())
    assert [f for f in fragments if f in haystack] == []
    # The twin: the same fragment planted in a Secret is found.
    kubectl(
        "create",
        "secret",
        "generic",
        "planted",
        "-n",
        namespace,
        f"--from-literal=copy={fragments[0]}",
    )
    assert fragments[0] in "\n".join(secret_texts().values())


def test_a_pod_certificate_client_says_hello_to_a_secret_mode_server(
    signer: str, namespace: str
) -> None:
    lines = _hello(namespace, server_mode=SECRET_MODE, client_mode=POD_CERTIFICATE)
    assert [line["status"] for line in lines] == [200] * 5
    assert {line["body"] for line in lines} == {f"Hello, client.{namespace}.svc!"}
    assert not kubectl(
        "get", "secret", "client-tls", "-n", namespace, "--ignore-not-found", "-o", "name"
    )
