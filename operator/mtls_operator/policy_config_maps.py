"""Keeps each namespace's TLS-policy ConfigMap right for its pod-certificate pods.

A pod in pod-certificate mode has no Secret: the kubelet writes its key and certificate, a
ClusterTrustBundle its ``ca.crt``, and the ConfigMap `tlssecret.POLICY_CONFIG_MAP` of its
namespace the rest (``tls-policy.json``, ``ca.crl``, the federated bundles). The reconciler
(`reconciler.Reconciler`) calls `PolicyConfigMaps.pod_seen` on each such pod's event and
`PolicyConfigMaps.resync` with every resync; the CA's state comes with each call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from mtls_ca.tls_profiles import policy_bytes
from mtls_context.layout import POLICY, federated_bundles
from mtls_operator import metrics
from mtls_operator.ca_view import CAView
from mtls_operator.certs import sha256_hex
from mtls_operator.claims import ClaimingPod
from mtls_operator.inventory import Inventory
from mtls_operator.ports import Cluster, Conflict
from mtls_operator.tlssecret import POLICY_CONFIG_MAP, is_managed, policy_config_map

__all__ = ["PolicyConfigMaps"]

_log = logging.getLogger("mtls_operator")

Warn = Callable[[Mapping[str, Any], str, str], None]
"""How a pod is told what went wrong: (pod, Event reason, message), once per reason."""


class PolicyConfigMaps:
    """The TLS-policy ConfigMaps of the namespaces that have pod-certificate pods."""

    def __init__(
        self, cluster: Cluster, inventory: Inventory, *, labels: Mapping[str, str], warn: Warn
    ) -> None:
        self._cluster = cluster
        self._inventory = inventory
        self._labels = labels
        self._warn = warn
        self._lock = threading.Lock()  # one ConfigMap write at a time
        self._written: dict[str, bytes] = {}  # namespace -> what its ConfigMap was written with

    def pod_seen(self, pod: ClaimingPod, first_seen: bool, ca: CAView | None) -> None:
        """A pod-certificate pod's event: the kubelet starts no such pod before the ConfigMap
        exists, so it is written now, not left to the resync; each new pod has it read once
        (it may have been deleted since it was last written)."""
        if first_seen or not self._current(pod.namespace, ca):
            self._write(pod.namespace, ca)

    def resync(self, ca: CAView | None) -> None:
        """Write every ConfigMap that is not known to match ``ca``; forget the namespaces that
        have no pod-certificate pods any more."""
        namespaces = self._inventory.pod_certificate_namespaces()
        with self._lock:
            for namespace in set(self._written) - set(namespaces):
                del self._written[namespace]
        for namespace in namespaces:
            if not self._current(namespace, ca):
                self._write(namespace, ca)

    def _current(self, namespace: str, ca: CAView | None) -> bool:
        return ca is not None and self._written.get(namespace) == _digest(
            policy_bytes(ca.tls_policy), ca
        )

    def _write(self, namespace: str, ca: CAView | None) -> None:
        """Make ``namespace``'s ConfigMap carry the CA's TLS policy; a failure is tried again
        at the next resync, as the ConfigMap is then not known to be current."""
        if ca is None:
            return  # the first tick reads the CA's state, and its resync writes the ConfigMap
        wanted = policy_config_map(
            namespace,
            ca.tls_policy,
            labels=self._labels,
            crl_pem=ca.crl_pem,
            federated=ca.federated,
        )
        with self._lock:
            try:
                current = self._cluster.get_config_map(namespace, POLICY_CONFIG_MAP)
                if current is None:
                    self._cluster.create_config_map(wanted)
                    _log.info("created ConfigMap %s/%s", namespace, POLICY_CONFIG_MAP)
                elif not is_managed(current):
                    for pod in self._inventory.pod_certificate_pods(namespace):
                        self._warn(
                            pod.ref,
                            "ConfigMapNotManaged",
                            f"ConfigMap '{POLICY_CONFIG_MAP}' exists and is not managed by"
                            " hello-mtls; it is left alone: delete it so that the operator can"
                            " write the TLS policy this pod's volume needs",
                        )
                    return
                elif any(
                    (current.get("data") or {}).get(k) != v for k, v in wanted["data"].items()
                ) or set(federated_bundles(current.get("data") or {}).values()) != set(
                    ca.federated
                ):
                    kept = {
                        k: v
                        for k, v in (current.get("data") or {}).items()
                        if not federated_bundles([k])
                    }
                    current["data"] = {**kept, **wanted["data"]}
                    self._cluster.replace_config_map(current)
                    _log.info(
                        "updated the TLS policy, CRL and federated bundles in ConfigMap %s/%s",
                        namespace,
                        POLICY_CONFIG_MAP,
                    )
            except Exception as error:  # a conflict, the API server or the network
                metrics.FAILED.labels("conflict" if isinstance(error, Conflict) else "error").inc()
                _log.warning("ConfigMap %s/%s: %s", namespace, POLICY_CONFIG_MAP, error)
                return
            self._written[namespace] = _digest(wanted["data"][POLICY].encode(), ca)
        self._inventory.clear_warnings(
            [pod.uid for pod in self._inventory.pod_certificate_pods(namespace)]
        )


def _digest(policy: bytes, ca: CAView) -> bytes:
    """What a namespace's ConfigMap was last written with: its policy, CRL and federated
    bundles."""
    return b"\0".join((policy, sha256_hex(ca.crl_pem).encode(), ca.federated_sha256.encode()))
