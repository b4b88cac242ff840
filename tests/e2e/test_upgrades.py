"""Scenario: `helm upgrade` from the previous release to this one under traffic (issue 25,
"Upgrades"; docs/upgrades.md).

The previous release (``PREVIOUS_COMMIT`` in hack/versions.sh) is installed from its own
chart with its own images (`hack/previous-release.sh build` makes both, cached by
commit). Its example server and client, still on the previous release's images as a user's apps
stay, call each other every half second while annotated pods hold Secrets; then the release is
upgraded to the working tree's chart and images. Proven: no request fails, every Secret
keeps its certificate (same serial: nothing is issued again), the roots and the signing
intermediate stay, and the CA's state file, written by the previous release, is carried into this
one's fields (the CRL, the revocation list, ``bundle_sequence``) by the new CA. How long the CA
Service had no ready pod (nothing could sign) during the upgrade is measured and logged.

The module installs the product itself, so it runs in a run of its own (``own_install``):
hack/ci.sh runs the helm test before the Helm pass, side by side with the federation
scenario (tests/e2e/test_federation.py), whose two installs are scoped to their own namespaces as
the helm test's is (``operator.watchNamespaces``: the product namespace, for the chart's example
pair, and the test's), so that no operator or admission policy of one serves the other's pods.
The same scenario over ``kubectl apply -f k8s/`` is not run yet (docs/upgrades.md).
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

from harness.waiting import wait_until
from mtls_context.layout import CRL
from mtls_contract.marks import LABEL_MANAGED
from mtls_operator.certs import inspect
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
    assert_client_never_failed,
    ca_state_document,
    ca_status,
    client_lines,
    client_pod,
    pending_pod,
    rollout,
    server,
)

pytestmark = pytest.mark.own_install("installs the previous release and upgrades it")

PENDING_PODS = 10
"""Annotated pods that only hold a Secret (Pending: no container runs), beside the example's."""
NEW_STATE_FIELDS = ("revoked", "crl_number", "crl", "bundle_sequence")
"""Fields of the CA state file (``state.json``) that the previous release does not write."""


def _previous_release() -> tuple[str, Path]:
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


def _with_images(manifest: Any, tag: str) -> Any:
    """``manifest`` with every ``hello-mtls/*:<IMAGE_TAG>`` image at ``tag`` instead."""
    return json.loads(json.dumps(manifest).replace(f':{IMAGE_TAG}"', f':{tag}"'))


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


def _scenario(
    how: str, install_previous: Callable[[str, Path, str], None], upgrade: Callable[[], None]
) -> None:
    """Install the previous release with ``install_previous(tag, source, apps)``, put it under
    traffic, ``upgrade`` it to the working tree, and check that nothing was lost."""
    tag, source = _previous_release()
    refuse_another_install()
    load_images([*IMAGES, *(image.replace(f":{IMAGE_TAG}", f":{tag}") for image in IMAGES)])
    apps = f"e2e-upgrade-{secrets.token_hex(3)}"
    volume = provide_ca_volume()
    try:
        kubectl("create", "namespace", apps)
        install_previous(tag, source, apps)
        rollout("hello-mtls-operator", PRODUCT_NAMESPACE, timeout=300)
        apply(_with_images(server(apps), tag), apps)
        apply(
            [_with_images(pending_pod(apps, f"p{i:03d}"), tag) for i in range(PENDING_PODS)], apps
        )
        rollout("hello", apps, timeout=240)
        apply(_with_images(client_pod(apps, count=100_000, interval=0.5), tag), apps)
        wait_until("the client's first answers", lambda: len(client_lines(apps)) >= 5, 180)
        # The example pair of the previous release in the product namespace, and this module's.
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
            for deployment in ("hello-mtls-ca", "hello-mtls-ca-signer", "hello-mtls-operator"):
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
        dump_namespace(PRODUCT_NAMESPACE)
        dump_namespace(apps)
        raise
    finally:
        uninstall_own([apps])
        if volume is not None:
            remove_ca_volume(volume)


def test_helm_upgrade_from_the_previous_release_keeps_every_secret_and_fails_no_request() -> None:
    def install_previous(tag: str, source: Path, apps: str) -> None:
        helm_run(
            "upgrade",
            "--install",
            RELEASE,
            str(source / "charts" / "hello-mtls"),
            "--namespace",
            PRODUCT_NAMESPACE,
            "--create-namespace",
            "--set",
            f"images.tag={tag}",
            "--set-json",
            f"operator.watchNamespaces={json.dumps([PRODUCT_NAMESPACE, apps])}",
            "--wait",
            "--timeout",
            "5m",
        )

    def upgrade() -> None:
        helm_run(
            "upgrade",
            RELEASE,
            str(ROOT / "charts" / "hello-mtls"),
            "--namespace",
            PRODUCT_NAMESPACE,
            "--reset-then-reuse-values",
            "--set",
            f"images.tag={IMAGE_TAG}",
            "--wait",
            "--timeout",
            "5m",
        )

    _scenario("helm", install_previous, upgrade)
