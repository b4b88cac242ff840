"""Least privilege on the real cluster: no role of the operator reaches the CA's keys, the
admission policy holds the operator's ServiceAccount to its own writes (its own Lease among
them), and the example pods carry no API token.

Requests "as the operator" use impersonation (``kubectl --as=system:serviceaccount:...``): the
API server authorizes and admits them exactly as it would the operator's own token.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess

from cryptography.hazmat.primitives import serialization

from harness.waiting import wait_until
from mtls_operator.leadership import LEASE_NAME
from support.admission import pod_certificates_enabled
from support.cluster_api import PRODUCT_NAMESPACE, apply, kubectl, kubectl_json
from support.operator_workloads import ca_private_keys
from support.pods import pod

OPERATOR = f"system:serviceaccount:{PRODUCT_NAMESPACE}:hello-mtls-operator"
PEM_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S)
SECRETS_REFUSED = (
    "the hello-mtls operator may only create and update Secrets of type kubernetes.io/tls "
    "labelled hello-mtls.dev/managed=true"
)
# Followed by "annotation", or with podCertificates.enabled "and
# hello-mtls.dev/intermediate-sha256 annotations".
PODS_REFUSED = (
    "the hello-mtls operator may change nothing on a pod but its hello-mtls.dev/secret-version"
)
LEASE_REFUSED = "the hello-mtls operator may only create and update its own Lease " + LEASE_NAME


def can_i(verb: str, resource: str, namespace: str, subresource: str = "") -> str:
    args = ["auth", "can-i", verb, resource, "-n", namespace, f"--as={OPERATOR}"]
    if subresource:
        args.append(f"--subresource={subresource}")
    return kubectl(*args, check=False).strip()


def as_operator(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", *args, f"--as={OPERATOR}"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _public(pem: str) -> bytes:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_no_role_of_the_operator_reaches_the_ca_keys(installed: str) -> None:
    # The keys are on a volume only the CA's pod mounts, not in a Secret any more.
    assert not kubectl(
        "get", "secret", "hello-mtls-ca-state", "-n", installed, "--ignore-not-found", "-o", "name"
    )
    # The operator may read Secrets (that is why the keys must not be in one) and patch pods,
    # but has no way onto the volume: no pods of its own to mount the claim, no exec or attach
    # into the CA's pod, no hand on its Deployment, claim or node.
    assert can_i("get", "secrets", installed) == "yes"
    for verb, resource, subresource in [
        ("create", "pods", ""),
        ("create", "pods", "exec"),
        ("create", "pods", "attach"),
        ("create", "pods", "portforward"),
        ("patch", "pods", "ephemeralcontainers"),
        ("patch", "deployments.apps", ""),
        ("get", "persistentvolumeclaims", ""),
        ("create", "persistentvolumeclaims", ""),
        ("get", "nodes", "proxy"),
    ]:
        answer = can_i(verb, resource, installed, subresource)
        assert answer == "no", f"{verb} {resource} {subresource}: {answer}"

    # Read every Secret the operator can read, as the operator: none holds a CA key.
    ca_keys = ca_private_keys()
    assert len(ca_keys) >= 2
    done = as_operator("get", "secrets", "--all-namespaces", "-o", "json")
    assert done.returncode == 0, done.stderr
    secrets = json.loads(done.stdout)["items"]
    names = {f"{s['metadata']['namespace']}/{s['metadata']['name']}" for s in secrets}
    assert f"{installed}/hello-mtls-operator-provisioner" in names  # the read did see Secrets
    found: dict[str, bytes] = {}
    text = []
    for secret in secrets:
        for value in (secret.get("data") or {}).values():
            decoded = base64.b64decode(value).decode(errors="replace").replace("\\n", "\n")
            text.append(decoded)
            for pem in PEM_KEY.findall(decoded):
                found[pem] = _public(pem)
    assert found, "no private key at all was read: the scan proves nothing"
    haystack = "\n".join(text)
    for key in ca_keys:
        body = "".join(key.split("-----")[2].split())
        assert body[20:80] not in haystack
        assert _public(key) not in found.values()


def test_the_operators_writes_outside_its_own_are_refused(installed: str, namespace: str) -> None:
    def secret(name: str, labels: dict[str, str], kind: str = "kubernetes.io/tls") -> str:
        data = {"tls.crt": base64.b64encode(b"x").decode(), "tls.key": "eA=="}
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "type": kind,
            "data": data,
        }
        return json.dumps(body)

    managed = {"hello-mtls.dev/managed": "true"}
    refusals = [
        as_operator("create", "-f", "-", stdin=secret("opaque", managed, "Opaque")),
        as_operator("create", "-f", "-", stdin=secret("unlabelled", {})),
        as_operator(
            "create",
            "-f",
            "-",
            stdin=secret("labelled-false", {"hello-mtls.dev/managed": "false"}),
        ),
    ]
    # Someone else's tls Secret cannot be taken over by labelling it (the operator may update,
    # not patch, Secrets).
    kubectl("create", "-f", "-", stdin=secret("theirs", {}))
    theirs = kubectl_json("get", "secret", "theirs", "-n", namespace)
    theirs["metadata"]["labels"] = managed
    refusals.append(as_operator("replace", "-f", "-", stdin=json.dumps(theirs)))
    for done in refusals:
        assert done.returncode != 0 and SECRETS_REFUSED in done.stderr, done.stderr
    # The twin: what the operator does write is admitted.
    done = as_operator("create", "-f", "-", stdin=secret("ours", managed))
    assert done.returncode == 0, done.stderr

    apply(pod("victim", labels={"app": "victim"}), namespace)
    wait_until(
        "the pod to exist",
        lambda: kubectl("get", "pod", "victim", "-n", namespace, "--ignore-not-found"),
        timeout=60,
    )
    image_swap = [{"op": "replace", "path": "/spec/containers/0/image", "value": "evil:latest"}]
    refusals = [
        as_operator(
            "patch", "pod", "victim", "-n", namespace, "--type=json", "-p", json.dumps(image_swap)
        ),
        as_operator("label", "pod", "victim", "-n", namespace, "app=stolen", "--overwrite"),
        as_operator(
            "annotate", "pod", "victim", "-n", namespace, "hello-mtls.dev/name=evil.example"
        ),
        as_operator("annotate", "pod", "victim", "-n", namespace, "other/annotation=1"),
    ]
    for done in refusals:
        assert done.returncode != 0 and PODS_REFUSED in done.stderr, done.stderr
    done = as_operator(
        "annotate", "pod", "victim", "-n", namespace, "hello-mtls.dev/secret-version=7"
    )
    assert done.returncode == 0, done.stderr
    # The signer's annotation, only where the operator signs pod certificates.
    done = as_operator(
        "annotate", "pod", "victim", "-n", namespace, "hello-mtls.dev/intermediate-sha256=ab"
    )
    if pod_certificates_enabled():
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode != 0 and PODS_REFUSED in done.stderr, done.stderr
    victim = kubectl_json("get", "pod", "victim", "-n", namespace)
    assert victim["metadata"]["labels"] == {"app": "victim"}
    assert victim["spec"]["containers"][0]["image"] != "evil:latest"


def test_the_operator_may_write_only_its_own_lease(installed: str, namespace: str) -> None:
    """Leader election: get and update the Lease by name in the release namespace, and create,
    which RBAC cannot limit by name; the write policy admits no other Lease."""
    for verb in ("get", "update"):
        assert can_i(verb, f"leases/{LEASE_NAME}", installed) == "yes", verb
    assert can_i("create", "leases", installed) == "yes"
    for verb, resource, where in [
        ("get", "leases/kube-scheduler", installed),
        ("update", "leases/kube-scheduler", installed),
        ("list", "leases", installed),
        ("watch", "leases", installed),
        ("delete", f"leases/{LEASE_NAME}", installed),
        ("create", "leases", namespace),
        ("update", f"leases/{LEASE_NAME}", "kube-system"),
    ]:
        assert can_i(verb, resource, where) == "no", f"{verb} {resource} in {where}"
    foreign = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "not-the-operators", "namespace": installed},
        "spec": {"holderIdentity": "intruder", "leaseDurationSeconds": 3600},
    }
    done = as_operator("create", "-f", "-", stdin=json.dumps(foreign))
    assert done.returncode != 0 and LEASE_REFUSED in done.stderr, done.stderr
    # The twin: the operator's own renewals (every 2 s) are admitted.
    renewed = kubectl_json("get", "lease", LEASE_NAME, "-n", installed)["spec"]["renewTime"]
    wait_until(
        "the operator to renew its Lease",
        lambda: (
            kubectl_json("get", "lease", LEASE_NAME, "-n", installed)["spec"]["renewTime"]
            != renewed
        ),
        timeout=30,
    )


def test_example_pods_carry_no_service_account_token(installed: str) -> None:
    for app in ("hello-server", "hello-client"):
        spec = kubectl_json("get", "deployment", app, "-n", installed)["spec"]["template"]["spec"]
        assert spec["automountServiceAccountToken"] is False
        pods = kubectl_json("get", "pods", "-n", installed, "-l", f"app.kubernetes.io/name={app}")
        assert pods["items"]
        for item in pods["items"]:
            mounts = [
                m["mountPath"]
                for c in item["spec"]["containers"]
                for m in c.get("volumeMounts", [])
            ]
            assert "/var/run/secrets/kubernetes.io/serviceaccount" not in mounts, app
