"""The wiring policy (hello-mtls-wiring, a MutatingAdmissionPolicy run by the API server): the
annotation is all a pod needs; hand-wired pods and pods outside the served namespaces are left
as they are. In pod-certificate mode (only with the chart's podCertificates.enabled; skipped
otherwise) the pod gets the kubelet's projected volume instead of the Secret.

The shapes are checked on what the real API server returns for a server-side dry run (admission
runs, nothing is stored); the hello is a real Deployment and client that only carry annotations.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.waiting import wait_until
from support.admission import admission_error, pod_certificates_enabled
from support.cluster_api import ROOT, kubectl, kubectl_json
from support.operator_workloads import rollout
from support.pods import CERT_DIR, pod

NAME = "hello-mtls.dev/name"
SANS = "hello-mtls.dev/sans"
DURATION = "hello-mtls.dev/duration"
MODE = "hello-mtls.dev/mode"
SIGNER = "hello-mtls.dev/pod-certificate"  # the chart's podCertificates.signerName
VOLUME = "hello-mtls"
QUICK_START = ROOT / "examples" / "hello.yaml"


def _admitted(manifest: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The pod as the API server would store it: every admission policy applied, nothing kept."""
    out = kubectl(
        "create",
        "--dry-run=server",
        "-n",
        namespace,
        "-o",
        "json",
        "-f",
        "-",
        stdin=json.dumps(manifest),
    )
    return dict(json.loads(out))


def _mounts(admitted: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Each container's and init container's mounts of the Secret volume, in order."""
    spec = admitted["spec"]
    return [
        [m for m in c.get("volumeMounts", []) if not m["name"].startswith("kube-api-access")]
        for c in spec.get("initContainers", []) + spec["containers"]
    ]


def _volumes(admitted: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in admitted["spec"].get("volumes", []) if not v["name"].startswith("kube-api")]


def _two_containers(name: str, annotations: dict[str, str]) -> dict[str, Any]:
    manifest = pod(name, annotations=annotations)
    main = manifest["spec"]["containers"][0]
    manifest["spec"]["containers"].append(dict(main, name="sidecar"))
    manifest["spec"]["initContainers"] = [dict(main, name="init", command=["true"])]
    return manifest


def test_annotation_only_gets_the_volume_and_a_read_only_mount_everywhere(namespace: str) -> None:
    admitted = _admitted(
        _two_containers("only-annotated", {NAME: f"web.{namespace}.svc"}), namespace
    )

    assert _volumes(admitted) == [
        {"name": VOLUME, "secret": {"secretName": "web-tls", "defaultMode": 420}}
    ]
    expected = [{"name": VOLUME, "mountPath": CERT_DIR, "readOnly": True}]
    assert _mounts(admitted) == [expected, expected, expected]  # init, main, sidecar


def test_secret_and_mount_path_annotations_choose_volume_and_directory(namespace: str) -> None:
    annotations = {
        NAME: f"web.{namespace}.svc",
        "hello-mtls.dev/secret": "shop-certs",
        "hello-mtls.dev/mount-path": "/etc/shop/tls",
    }
    admitted = _admitted(pod("chosen", annotations=annotations), namespace)

    assert _volumes(admitted)[0]["secret"]["secretName"] == "shop-certs"
    assert _mounts(admitted) == [[{"name": VOLUME, "mountPath": "/etc/shop/tls", "readOnly": True}]]


@pytest.mark.parametrize("wiring", ["own-volume", "own-mount-path"])
def test_hand_wired_pod_is_left_exactly_as_written(namespace: str, wiring: str) -> None:
    manifest = pod("by-hand", annotations={NAME: f"by-hand.{namespace}.svc"}, secret="by-hand-tls")
    if wiring == "own-mount-path":
        # A mount at the same path from a volume of another name and Secret: still theirs.
        manifest["spec"]["volumes"][0]["secret"]["secretName"] = "their-own"
    admitted = _admitted(manifest, namespace)

    assert _volumes(admitted) == [
        dict(
            manifest["spec"]["volumes"][0],
            secret=dict(manifest["spec"]["volumes"][0]["secret"], defaultMode=420),
        )
    ]
    assert _mounts(admitted) == [manifest["spec"]["containers"][0]["volumeMounts"]]


def test_unannotated_pod_is_not_wired(namespace: str) -> None:
    assert _volumes(_admitted(pod("plain"), namespace)) == []


def test_pods_in_the_product_namespace_are_never_wired(installed: str) -> None:
    # kube-system is excluded by the same selector (tests/unit checks the rendered policy).
    admitted = _admitted(pod("own", annotations={NAME: f"own.{installed}.svc"}), installed)
    assert _volumes(admitted) == []


def test_bad_mount_path_is_refused_with_the_policy_message(namespace: str) -> None:
    annotations = {NAME: f"web.{namespace}.svc", "hello-mtls.dev/mount-path": "tls/../etc"}
    assert admission_error(pod("bad-path", annotations=annotations), namespace) == (
        "hello-mtls.dev/mount-path: 'tls/../etc' must be an absolute path without ':' or '..'"
    )


def test_the_quick_start_says_hello_with_only_the_annotation(installed: str) -> None:
    """examples/hello.yaml as the README applies it: two Deployments that carry nothing of
    hello-mtls but the annotation; the client's pods log a hello over mTLS."""
    kubectl("delete", "namespace", "demo", "--ignore-not-found", timeout=180)
    kubectl("apply", "-f", str(QUICK_START))
    try:
        for deployment in ("web", "client"):
            rollout(deployment, "demo")
            template = kubectl_json("-n", "demo", "get", "deployment", deployment)["spec"][
                "template"
            ]
            assert "volumes" not in template["spec"], "the policy wires pods, never the workload"
        (pod_of_client,) = kubectl_json("-n", "demo", "get", "pods", "-l", "app=client")["items"]
        assert _volumes(pod_of_client) == [
            {"name": VOLUME, "secret": {"secretName": "client-tls", "defaultMode": 420}}
        ]

        def hello() -> dict[str, Any] | None:
            logs = kubectl("-n", "demo", "logs", "deployment/client", "--tail=20")
            lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
            return next((line for line in lines if line.get("status") == 200), None)

        line = wait_until("a hello in the quick start client's log", hello, timeout=120)
        assert line["body"] == "Hello, client.demo.svc!"
    finally:
        kubectl("delete", "namespace", "demo", "--wait=false", check=False)


@pytest.fixture
def signer(installed: str) -> str:
    """The signer name, when the installed product signs pod certificates."""
    if not pod_certificates_enabled():
        pytest.skip(
            "the install has podCertificates.enabled off (k8s/ renders the defaults): pods are"
            " not wired for pod-certificate mode"
        )
    return SIGNER


def _pod_certificate_volume(signer: str, lifetime: int) -> dict[str, Any]:
    """The projected volume a pod in pod-certificate mode gets, as the API server stores it."""
    return {
        "name": VOLUME,
        "projected": {
            "sources": [
                {
                    "podCertificate": {
                        "signerName": signer,
                        "keyType": "ECDSAP256",
                        "maxExpirationSeconds": lifetime,
                        "keyPath": "tls.key",
                        "certificateChainPath": "tls.crt",
                    }
                },
                {
                    "clusterTrustBundle": {
                        "signerName": signer,
                        "labelSelector": {},
                        "path": "ca.crt",
                    }
                },
                {"configMap": {"name": "hello-mtls-tls-policy"}},
            ],
            "defaultMode": 420,
        },
    }


def test_pod_certificate_pod_gets_the_projected_volume_and_a_mount_everywhere(
    namespace: str, signer: str
) -> None:
    annotations = {
        NAME: f"web.{namespace}.svc",
        SANS: f"api.{namespace}",
        MODE: "pod-certificate",
        DURATION: "2h",
    }
    admitted = _admitted(_two_containers("pod-certificate", annotations), namespace)

    assert _volumes(admitted) == [_pod_certificate_volume(signer, 7200)]
    expected = [{"name": VOLUME, "mountPath": CERT_DIR, "readOnly": True}]
    assert _mounts(admitted) == [expected, expected, expected]  # init, main, sidecar


def test_pod_certificate_pod_without_volumes_gets_the_default_lifetime(
    namespace: str, signer: str
) -> None:
    """No service account token either: the pod has no volumes or mounts to add to."""
    manifest = pod(
        "no-volumes",
        annotations={NAME: f"web.{namespace}.svc", MODE: "pod-certificate"},
    )
    manifest["spec"]["automountServiceAccountToken"] = False
    admitted = _admitted(manifest, namespace)

    assert admitted["spec"]["volumes"] == [_pod_certificate_volume(signer, 86400)]
    assert admitted["spec"]["containers"][0]["volumeMounts"] == [
        {"name": VOLUME, "mountPath": CERT_DIR, "readOnly": True}
    ]


def test_hand_wired_pod_certificate_pod_is_left_as_written(namespace: str, signer: str) -> None:
    manifest = pod(
        "by-hand", annotations={NAME: f"by-hand.{namespace}.svc", MODE: "pod-certificate"}
    )
    own = {
        "name": "certs",
        "projected": {
            "sources": [
                {
                    "podCertificate": {
                        "signerName": signer,
                        "keyType": "ECDSAP384",
                        "credentialBundlePath": "bundle.pem",
                    }
                }
            ]
        },
    }
    manifest["spec"]["volumes"] = [own]
    manifest["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "certs", "mountPath": "/etc/certs", "readOnly": True}
    ]
    admitted = _admitted(manifest, namespace)

    assert [v["name"] for v in _volumes(admitted)] == ["certs"]
    assert _mounts(admitted) == [manifest["spec"]["containers"][0]["volumeMounts"]]


def test_pod_certificate_lifetime_the_api_refuses_gets_the_names_policy_message(
    namespace: str, signer: str
) -> None:
    """Not wired (the API's own error would name a volume field), so the names policy speaks."""
    annotations = {NAME: f"web.{namespace}.svc", MODE: "pod-certificate", DURATION: "30m"}
    assert admission_error(pod("short", annotations=annotations), namespace) == (
        "hello-mtls.dev/duration: duration 30m is outside the 1h to 91d a pod certificate may live"
    )
