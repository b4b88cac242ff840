"""The Kubernetes adapter's own rule, checked without an API server: it never replaces an
object without the resourceVersion it read (the write would overwrite what another replica
wrote meanwhile)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mtls_operator import kube


def _replaces() -> dict[str, Callable[[dict[str, Any]], object]]:
    cluster = kube.Kube()
    pod_certificates = kube.PodCertificateAPI(cluster)
    return {
        "Secret": cluster.replace_secret,
        "ConfigMap": cluster.replace_config_map,
        "Lease": kube.LeaseAPI(cluster, request_timeout=1).replace_lease,
        "PodCertificateRequest": pod_certificates.update_request_status,
        "ClusterTrustBundle": pod_certificates.replace_trust_bundle,
    }


@pytest.mark.parametrize("kind", sorted(_replaces()))
def test_a_replace_without_a_resource_version_is_refused_before_it_is_sent(kind: str) -> None:
    body = {"kind": kind, "metadata": {"name": "web-tls", "namespace": "shop"}}
    with pytest.raises(ValueError, match=f"{kind} web-tls has no resourceVersion"):
        _replaces()[kind](body)
