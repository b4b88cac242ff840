"""Scenario: the CA under an organisation's offline root on the cluster (issue 24, "Upstream
root"; docs/ca.md, "Under your organisation's root").

The chart is installed with ``ca.upstream.mode=offline``; the organisation is ``openssl`` in the
test (`support.org_ca`: a root from ``openssl req -x509`` with name constraints, ``openssl ca``
signs). Proven, with the commands docs/ca.md gives: the root holder writes its CSR and waits, the
CA signers wait too (running, not ready, no restart, saying so in their log) and
``hello-mtls-ca status`` says the import is awaited; after ``hello-mtls-ca import`` through
``kubectl exec -i`` every part becomes ready by itself, an annotated pod's Secret holds the
organisation's root in ``ca.crt`` and a ``tls.crt`` chain that ``openssl verify`` takes up to
it, the example server and client talk mTLS under it, and ``status`` shows the chain and its
expiry. Root on a volume runs in the integration tests only (tests/integration/
test_ca_upstream_root.py): a second install would cost the CI stage minutes it does not have.

One install per cluster (``own_install``): hack/ci.sh runs it with the upgrade scenario,
before the Helm pass.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from harness.waiting import wait_until
from mtls_context.layout import CA, CERT
from mtls_operator.tlssecret import decode_data
from support.cluster_api import (
    IMAGE_TAG,
    IMAGES,
    PRODUCT_NAMESPACE,
    RELEASE,
    ROOT,
    apply,
    dump_namespace,
    kubectl,
    kubectl_json,
    log,
)
from support.installs import (
    helm_run,
    load_images,
    provide_ca_volume,
    refuse_another_install,
    remove_ca_volume,
    uninstall_own,
)
from support.operator_workloads import (
    CA_STATE_DIR,
    ca_status,
    client_lines,
    client_pod,
    finished,
    rollout,
    server,
)
from support.org_ca import OrgCA, openssl_verify

pytestmark = pytest.mark.own_install("installs the product in the offline upstream mode")

CONSTRAINTS = "permitted;URI:cluster.local"
"""The organisation's root may only vouch for SPIFFE IDs of the chart's trust domain."""
SIGNERS = "app.kubernetes.io/name=hello-mtls-ca-signer"
WAITING = "waiting for the signing material, not serving yet"
"""What a CA signer logs while the root holder has no CA (signer_material.Refresher.first)."""
REQUESTS = 10


def _in_ca(*command: str, stdin: str | None = None) -> str:
    """``kubectl -n hello-mtls exec [-i] deploy/hello-mtls-ca -c ca -- COMMAND``."""
    interactive = ["-i"] if stdin is not None else []
    return kubectl(
        "-n", PRODUCT_NAMESPACE, "exec", *interactive, "deploy/hello-mtls-ca", "-c", "ca", "--",
        *command, stdin=stdin, timeout=60,
    )  # fmt: skip


def _csr() -> str | None:
    try:
        return _in_ca("cat", f"{CA_STATE_DIR}/upstream.csr") or None
    except RuntimeError:  # the pod is not running yet, or has not written it
        return None


def _signers() -> list[dict[str, Any]]:
    return list(kubectl_json("-n", PRODUCT_NAMESPACE, "get", "pods", "-l", SIGNERS)["items"])


def _all_signers_wait() -> bool:
    pods = _signers()
    logs = [
        kubectl("-n", PRODUCT_NAMESPACE, "logs", p["metadata"]["name"], check=False) for p in pods
    ]
    return bool(pods) and all(WAITING in text for text in logs)


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_offline_root_signed_by_openssl_reaches_every_pod(tmp_path: Path) -> None:
    refuse_another_install()
    load_images(IMAGES)
    org = OrgCA(tmp_path / "org", "Example Root", name_constraints=CONSTRAINTS)
    apps = f"e2e-upstream-{secrets.token_hex(3)}"
    volume = provide_ca_volume()
    started = time.monotonic()
    try:
        # No --wait: nothing is ready before the import.
        helm_run(
            "upgrade", "--install", RELEASE, str(ROOT / "charts" / "hello-mtls"),
            "--namespace", PRODUCT_NAMESPACE, "--create-namespace",
            "--set", f"images.tag={IMAGE_TAG}", "--set", "ca.upstream.mode=offline",
            "--set", "examples.enabled=false",
        )  # fmt: skip
        csr = wait_until("the root holder's CSR", _csr, 240, 2)
        wait_until("every CA signer to say it waits for the material", _all_signers_wait, 120, 2)
        waiting = json.loads(_in_ca("hello-mtls-ca", "status", "--state", CA_STATE_DIR))
        assert waiting["phase"] == "awaiting-import", waiting
        assert not any(_ready(p) for p in _signers())
        log(f"offline install waits for the import after {time.monotonic() - started:.0f} s")

        (tmp_path / "ca.csr").write_text(csr)
        signing = org.sign(tmp_path / "ca.csr", tmp_path / "signing.crt")
        imported_at = time.monotonic()
        _in_ca(
            "hello-mtls-ca", "import", "--state", CA_STATE_DIR, "/dev/stdin",
            stdin=signing.read_text() + org.root.read_text(),
        )  # fmt: skip
        for deployment in ("hello-mtls-ca", "hello-mtls-ca-signer", "hello-mtls-operator"):
            rollout(deployment, PRODUCT_NAMESPACE, timeout=300)
        log(f"every part ready {time.monotonic() - imported_at:.0f} s after the import")
        restarts = {
            p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"]
            for p in kubectl_json("-n", PRODUCT_NAMESPACE, "get", "pods")["items"]
        }
        log(f"restarts while waiting for the import: {restarts}")
        assert not [name for name, n in restarts.items() if name.startswith("hello-mtls-ca") and n]

        kubectl("create", "namespace", apps)
        apply(server(apps), apps)
        rollout("hello", apps, timeout=240)
        apply(client_pod(apps, count=REQUESTS, interval=0.5), apps)
        wait_until("the client to finish", lambda: finished("client", apps), 240, 2)
        lines = client_lines(apps)
        assert finished("client", apps) == "Succeeded", lines[-3:]
        assert len(lines) == REQUESTS and not [x for x in lines if x.get("error")], lines

        data = decode_data(kubectl_json("-n", apps, "get", "secret", "hello-tls"))
        assert data[CA].decode() == org.root.read_text()
        chain = x509.load_pem_x509_certificates(data[CERT])
        assert chain[1] == x509.load_pem_x509_certificate(signing.read_bytes())
        assert openssl_verify(org.root, data[CERT].decode(), tmp_path).endswith(": OK")

        status = ca_status()
        assert status["upstream"] == "offline"
        assert [c["role"] for c in status["chain"]] == ["signing", "root"]
        assert status["chain"][1]["subject"] == "CN=Example Root,O=Example Corp"
        assert status["signing"]["intermediate_not_after"] == chain[1].not_valid_after_utc.strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        assert status["name_constraints"], status
        log(
            f"under the organisation's root: {REQUESTS} mTLS requests answered; signing CA"
            f" expires {status['signing']['intermediate_not_after']}; scenario"
            f" {time.monotonic() - started:.0f} s before the uninstall"
        )
    except BaseException:
        dump_namespace(PRODUCT_NAMESPACE)
        dump_namespace(apps)
        raise
    finally:
        uninstall_own([apps])
        if volume is not None:
            remove_ca_volume(volume)
