"""Scenario: `helm upgrade` from the previous release to this one under traffic (issue 25,
"Upgrades"; docs/upgrades.md).

The previous release is installed from its own chart with its own images, put under traffic,
upgraded to the working tree's chart and images, and checked (`support.upgrades`: no request
failed, every Secret kept, the roots unchanged, the CA's state migrated). The same scenario over
``kubectl apply -f k8s/`` is the kubectl pass's install (tests/e2e/conftest.py).

The module installs the product itself, so it runs in a run of its own (``own_install``):
hack/ci.sh runs it before the Helm pass, side by side with the federation scenario
(tests/e2e/test_federation.py), whose two installs are scoped to their own namespaces as this
one's is (``operator.watchNamespaces``: the product namespace, for the chart's example pair, and
the test's), so that no operator or admission policy of one serves the other's pods.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from support.cluster_api import (
    IMAGE_TAG,
    IMAGES,
    PRODUCT_NAMESPACE,
    RELEASE,
    ROOT,
    dump_namespace,
)
from support.installs import (
    helm_run,
    load_images,
    provide_ca_volume,
    refuse_another_install,
    remove_ca_volume,
    uninstall_own,
)
from support.upgrades import upgrade_under_traffic

pytestmark = pytest.mark.own_install("installs the previous release and upgrades it")


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

    refuse_another_install()
    load_images(IMAGES)
    apps = f"e2e-upgrade-{secrets.token_hex(3)}"
    volume = provide_ca_volume()
    try:
        upgrade_under_traffic("helm", install_previous, upgrade, apps)
    except BaseException:
        dump_namespace(PRODUCT_NAMESPACE)
        raise
    finally:
        uninstall_own([apps])
        if volume is not None:
            remove_ca_volume(volume)
