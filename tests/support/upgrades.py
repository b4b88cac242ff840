"""The upgrade from the previous release under traffic (issue 25, "Upgrades"; docs/upgrades.md),
for both ways a user installs: `helm upgrade` (tests/e2e/test_upgrades.py, an install of its own)
and `kubectl apply -f k8s/` over the previous release's ``k8s/`` (`upgrade_k8s_under_traffic`: the
kubectl pass's install, tests/e2e/conftest.py, so the rest of that pass runs on the upgraded
install).

The previous release (``PREVIOUS_COMMIT`` in hack/versions.sh) is installed with its own
images (`hack/previous-release.sh build` makes its source and images, cached by commit).
`upgrade_under_traffic` starts, in a namespace of its own, the example server and a client calling
it every half second and annotated pods that only hold a Secret, all on the previous release's
images as a user's apps stay; then it upgrades the install to the working tree and proves that no
request failed, every Secret kept its certificate (same serial: nothing issued again), the roots
and the signing intermediate stayed, and the CA's state file, written by the previous release, was
carried into this one's fields (the CRL, the revocation list, ``bundle_sequence``) by the new CA.
How long the CA Service had no ready pod (nothing could sign) during the upgrade is logged.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.waiting import wait_until
from mtls_context.layout import CRL
from mtls_contract.marks import LABEL_MANAGED
from mtls_operator.certs import inspect
from mtls_operator.tlssecret import decode_data
from support.cluster_api import (
    IMAGE_TAG,
    IMAGES,
    PRODUCT_NAMESPACE,
    ROOT,
    apply,
    dump_namespace,
    kubectl,
    kubectl_json,
    log,
)
from support.installs import load_images
from support.operator_workloads import (
    assert_client_never_failed,
    ca_state_document,
    ca_status,
    client_lines,
    client_pod,
    pending_pod,
    rollout,
    server,
)

PENDING_PODS = 10
"""Annotated pods that only hold a Secret (Pending: no container runs), beside the example's."""
PREVIOUS_DEPLOYMENTS = ("hello-mtls-ca", "hello-mtls-operator", "hello-server", "hello-client")
"""The Deployments of the previous release's ``k8s/``."""
UPGRADED_DEPLOYMENTS = ("hello-mtls-ca", "hello-mtls-ca-signer", "hello-mtls-operator")
"""The product's Deployments an upgrade has rolled out before the checks."""
NEW_STATE_FIELDS = ("revoked", "crl_number", "crl", "bundle_sequence")
"""Fields of the CA state file (``state.json``) that the previous release does not write."""


def previous_release() -> tuple[str, Path]:
    """The previous release's tag and its source directory (chart, k8s/)."""
    done = subprocess.run(
        [str(ROOT / "hack" / "previous-release.sh"), "source"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(done.stderr.strip())
    tag, source = done.stdout.split()
    return tag, Path(source)


def with_images(manifest: Any, tag: str) -> Any:
    """``manifest`` with every ``hello-mtls/*:<IMAGE_TAG>`` image at ``tag`` instead."""
    return json.loads(json.dumps(manifest).replace(f':{IMAGE_TAG}"', f':{tag}"'))


def _manifests(k8s: Path, tag: str) -> str:
    """The objects of the directory ``k8s`` (a release's ``k8s/``) as one List, their images
    retagged from ``IMAGE_TAG`` to ``tag`` (what a user of k8s/ does with sed or kustomize)."""
    items = [
        document
        for path in sorted(k8s.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": with_images(items, tag)})


def _has_ready_endpoint(service: str) -> bool:
    slices = kubectl_json(
        "get",
        "endpointslices",
        "-n",
        PRODUCT_NAMESPACE,
        "-l",
        f"kubernetes.io/service-name={service}",
    )["items"]
    return any(
        (endpoint.get("conditions") or {}).get("ready")
        for endpoint_slice in slices
        for endpoint in endpoint_slice.get("endpoints") or []
    )


@contextmanager
def _signing_gaps(service: str = "hello-mtls-ca") -> Iterator[list[float]]:
    """Within the block, the longest time (seconds) ``service`` of the product namespace had
    no ready endpoint, polled every half second: how long nothing could sign. The list holds
    it (one number) once the block has ended."""
    longest: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        since: float | None = None
        gap = 0.0
        while not stop.wait(0.5):
            now = time.monotonic()
            try:
                ready = _has_ready_endpoint(service)
            except (RuntimeError, subprocess.SubprocessError, ValueError):
                continue  # unknown this round; the next one tells
            if ready:
                since = None
            else:
                since = now if since is None else since
                gap = max(gap, now - since)
        longest.append(gap)

    watcher = threading.Thread(target=poll, name="signing-gaps", daemon=True)
    watcher.start()
    try:
        yield longest
    finally:
        stop.set()
        watcher.join(timeout=60)


def _managed(apps: str) -> dict[str, dict[str, Any]]:
    """Every managed Secret of the install (``namespace/name``: the product namespace and
    ``apps``) → its serial, whether it holds ``ca.crl``."""
    found = [
        secret
        for namespace in (PRODUCT_NAMESPACE, apps)
        for secret in kubectl_json(
            "-n", namespace, "get", "secrets", "-l", f"{LABEL_MANAGED}=true"
        )["items"]
    ]
    result = {}
    for secret in found:
        data = decode_data(secret)
        inspection = inspect(data)
        assert inspection.problem is None, (secret["metadata"]["name"], inspection.problem)
        meta = secret["metadata"]
        result[f"{meta['namespace']}/{meta['name']}"] = {
            "serial": inspection.serial,
            "crl": bool(data.get(CRL)),
        }
    return result


def _roots(status: dict[str, Any]) -> tuple[list[str], str, str]:
    return (
        [root["fingerprint_sha256"] for root in status["roots"]],
        status["bundle_sha256"],
        status["signing"]["intermediate_fingerprint_sha256"],
    )


def upgrade_under_traffic(
    how: str,
    install_previous: Callable[[str, Path, str], None],
    upgrade: Callable[[], None],
    apps: str,
) -> None:
    """Install the previous release with ``install_previous(tag, source, apps)``, put it under
    traffic in the namespace ``apps`` (created here), ``upgrade`` it to the working tree, and
    check that nothing was lost. The caller removes ``apps`` (and the install) afterwards."""
    tag, source = previous_release()
    load_images([image.replace(f":{IMAGE_TAG}", f":{tag}") for image in IMAGES])
    try:
        kubectl("create", "namespace", apps)
        install_previous(tag, source, apps)
        rollout("hello-mtls-operator", PRODUCT_NAMESPACE, timeout=300)
        apply(with_images(server(apps), tag), apps)
        apply([with_images(pending_pod(apps, f"p{i:03d}"), tag) for i in range(PENDING_PODS)], apps)
        rollout("hello", apps, timeout=240)
        apply(with_images(client_pod(apps, count=100_000, interval=0.5), tag), apps)
        wait_until("the client's first answers", lambda: len(client_lines(apps)) >= 5, 180)
        # The example pair of the previous release in the product namespace, and this one's.
        wanted = PENDING_PODS + 2 + 2
        wait_until(f"{wanted} managed Secrets", lambda: len(_managed(apps)) >= wanted, 180, 2)

        before = _managed(apps)
        roots_before = _roots(ca_status())
        old_state = ca_state_document()
        assert old_state["format"] == 1
        missing = [field for field in NEW_STATE_FIELDS if field not in old_state]
        log(
            f"{tag} installed ({how}): {len(before)} managed Secrets,"
            f" {len(client_lines(apps))} requests so far; its CA state lacks"
            f" {', '.join(missing) or 'nothing'}"
        )

        started = time.monotonic()
        with _signing_gaps() as gap:
            upgrade()
            for deployment in UPGRADED_DEPLOYMENTS:
                rollout(deployment, PRODUCT_NAMESPACE, timeout=300)
        log(
            f"{how} upgrade to the working tree, images {IMAGE_TAG}:"
            f" {time.monotonic() - started:.0f} s; the CA Service had no ready pod for at most"
            f" {gap[0]:.1f} s"
        )

        # The new operator has been through every Secret once it has given each the CA's CRL.
        wait_until(
            "every managed Secret to hold the new CA's ca.crl",
            lambda: all(secret["crl"] for secret in _managed(apps).values()),
            240,
            2,
        )
        after = _managed(apps)
        reissued = sorted(
            k for k in before if after.get(k, {}).get("serial") != before[k]["serial"]
        )
        assert sorted(after) == sorted(before), (sorted(before), sorted(after))
        assert reissued == [], f"{len(reissued)} of {len(before)} re-issued: {reissued}"

        status = ca_status()
        assert _roots(status) == roots_before
        new_state = ca_state_document()
        assert new_state["format"] == 1
        assert all(field in new_state for field in NEW_STATE_FIELDS), sorted(new_state)
        assert status["crl_number"] >= 1
        assert [g["root"] for g in new_state["generations"]] == [
            g["root"] for g in old_state["generations"]
        ]

        assert_client_never_failed(apps, f"the {how} upgrade {tag} -> working tree")
        log(
            f"{how} upgrade {tag} -> working tree: {len(after)} Secrets, none re-issued; roots"
            f" and intermediate unchanged; CA state carried into"
            f" {', '.join(missing) or 'the same fields'} (CRL number {status['crl_number']})"
        )
    except BaseException:
        dump_namespace(apps)
        raise


def upgrade_k8s_under_traffic() -> None:
    """Install the previous release's ``k8s/`` (its images retagged to its tag, as a user of
    ``k8s/`` does), then ``kubectl apply -f k8s/`` of the working tree over it under traffic
    (`upgrade_under_traffic`); the product stays installed, upgraded, and the traffic's namespace
    is deleted."""

    def install_previous(tag: str, source: Path, apps: str) -> None:
        log(f"kubectl apply -f <{tag}'s k8s/> (images retagged {tag}; it serves every namespace)")
        kubectl("apply", "-f", "-", stdin=_manifests(source / "k8s", tag), timeout=120)
        # The install settles, its examples included, before the apps start and the upgrade
        # replaces it: an upgrade begun while they still started cost two requests on a
        # starved node (docs/upgrades.md).
        for deployment in PREVIOUS_DEPLOYMENTS:
            rollout(deployment, PRODUCT_NAMESPACE, timeout=300)

    def upgrade() -> None:
        # What docs/upgrades.md tells a user of k8s/: apply the new release's directory over
        # the old one's objects (0.3.0 removes none, so nothing is pruned).
        log(f"kubectl apply -f k8s/ (images {IMAGE_TAG})")
        kubectl("apply", "-f", str(ROOT / "k8s"), timeout=120)

    apps = f"e2e-upgrade-{secrets.token_hex(3)}"
    try:
        upgrade_under_traffic("kubectl", install_previous, upgrade, apps)
    finally:
        kubectl("delete", "namespace", apps, "--ignore-not-found", "--wait=false", check=False)
