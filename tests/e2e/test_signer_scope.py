"""The pod-certificate signer answers only pods that opted in, in namespaces the installation
serves, and takes their names from the pod as the API server stores it.

Any pod may name our signer in a hand-written ``podCertificate`` volume, with any
``userAnnotations``: the admission policies judge annotations, not volumes, and the kubelet
relays whatever the volume says. So the signer must refuse such pods itself, with a reason the
pod's Events show. Needs the chart's ``podCertificates.enabled`` (the Helm pass). Each scenario
uses its own namespace, or one uniquely named pod in ``kube-system`` and in the release
namespace, and changes nothing of the installation.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509

from harness.waiting import wait_until
from mtls_contract.marks import ANNOTATION_MODE, ANNOTATION_NAME, POD_CERTIFICATE
from support.admission import pod_certificates_enabled
from support.cluster_api import apply, kubectl, kubectl_json
from support.operator_workloads import phase
from support.pods import pod

SIGNER = "hello-mtls.dev/pod-certificate"
HAND_DIR = "/var/run/hand"


@pytest.fixture
def signer(installed: str) -> Iterator[str]:
    if not pod_certificates_enabled():
        pytest.skip("the install has podCertificates.enabled off (k8s/ renders the defaults)")
    yield SIGNER


def _hand_written(
    name: str, claimed: str, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """A pod that names our signer in a volume of its own, claiming ``claimed`` there."""
    body = pod(name, annotations=annotations)
    source = {
        "signerName": SIGNER,
        "keyType": "ECDSAP256",
        "keyPath": "tls.key",
        "certificateChainPath": "tls.crt",
        "userAnnotations": {ANNOTATION_NAME: claimed},
    }
    body["spec"]["volumes"] = [
        {"name": "hand", "projected": {"sources": [{"podCertificate": source}]}}
    ]
    body["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "hand", "mountPath": HAND_DIR, "readOnly": True}
    ]
    return body


def _denied(name: str, namespace: str) -> str:
    """The signer's Denied Event on pod ``name``, as ``kubectl describe pod`` shows it."""

    def event() -> str | None:
        events = kubectl_json(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            f"involvedObject.name={name},reason=PodCertificateDenied",
        )["items"]
        return events[0]["message"] if events else None

    return wait_until(f"the signer's Denied Event on pod {name}", event, timeout=120)


def _conditions(name: str, namespace: str) -> list[tuple[str, str]]:
    requests = kubectl_json("get", "podcertificaterequests", "-n", namespace)["items"]
    return [
        (c["type"], c["reason"])
        for r in requests
        if r["spec"]["podName"] == name
        for c in r.get("status", {}).get("conditions", [])
    ]


def test_a_pod_that_did_not_opt_in_is_denied(signer: str, namespace: str) -> None:
    apply(_hand_written("intruder", f"hand.{namespace}.svc"), namespace)
    assert _denied("intruder", namespace) == (
        "NotOptedIn: pod 'intruder' did not opt in: this signer signs only pods annotated"
        " hello-mtls.dev/name and hello-mtls.dev/mode: pod-certificate"
    )
    assert _conditions("intruder", namespace) == [("Denied", "NotOptedIn")]
    assert phase("intruder", namespace) == "Pending"


@pytest.mark.parametrize("unserved", ["kube-system", "release"])
def test_a_pod_in_a_namespace_the_install_does_not_serve_is_denied(
    signer: str, installed: str, unserved: str
) -> None:
    """hello-mtls never serves kube-system nor its own namespace (nor, with
    operator.watchNamespaces, any other unlisted one): the namespace is judged first, before
    the pod is read. (The pod carries no annotation, so that the operator leaves no object in
    these namespaces.)"""
    target = installed if unserved == "release" else unserved
    name = f"hello-mtls-e2e-intruder-{secrets.token_hex(3)}"
    apply(_hand_written(name, f"intruder.{target}.svc"), target)
    try:
        assert _denied(name, target) == (
            f"NamespaceNotServed: namespace '{target}' is not served: hello-mtls never serves"
            f" 'kube-system' nor '{installed}'"
        )
        assert _conditions(name, target) == [("Denied", "NamespaceNotServed")]
    finally:
        kubectl("delete", "pod", name, "-n", target, "--wait=false", check=False)


def test_the_names_are_the_pods_never_the_volumes_user_annotations(
    signer: str, namespace: str
) -> None:
    """A pod that opted in as web gets web's certificate, whatever names its volume (or the
    node that relays it) asks for."""
    annotations = {ANNOTATION_NAME: f"web.{namespace}.svc", ANNOTATION_MODE: POD_CERTIFICATE}
    apply(_hand_written("web", f"db.{namespace}.svc", annotations), namespace)
    wait_until("the pod to run", lambda: phase("web", namespace) == "Running", timeout=180)
    chain = kubectl("exec", "-n", namespace, "web", "--", "cat", f"{HAND_DIR}/tls.crt")
    leaf = x509.load_pem_x509_certificates(chain.encode())[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [f"web.{namespace}.svc"]
