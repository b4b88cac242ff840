"""The few Kubernetes API calls the operator makes, on the official client, as plain dicts."""

from __future__ import annotations

import datetime
import json
import logging
import socket
from collections.abc import Mapping
from typing import Any, cast

import kubernetes

from mtls_operator.ports import Conflict

__all__ = ["Kube", "load_config"]

_COMPONENT = "hello-mtls-operator"
_log = logging.getLogger("mtls_operator")


def load_config() -> None:
    """Use the pod's ServiceAccount in a cluster, else ``KUBECONFIG`` (or ``~/.kube/config``)."""
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]


class Kube:
    """`reconciler.Cluster` on the ``kubernetes`` client; bodies are plain dicts."""

    def __init__(self, *, pool_size: int = 20, request_timeout: float = 30.0) -> None:
        configuration = kubernetes.client.Configuration.get_default_copy()
        # One connection per handler thread; the default (4) makes urllib3 drop and reconnect.
        configuration.connection_pool_maxsize = pool_size
        self._api = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))
        self._timeout = request_timeout

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._json(
                self._api.read_namespaced_secret(
                    name, namespace, _preload_content=False, _request_timeout=self._timeout
                )
            )
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return None
            raise

    def create_secret(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._write(
            self._api.create_namespaced_secret, body["metadata"]["namespace"], body=body
        )

    def replace_secret(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        return self._write(
            self._api.replace_namespaced_secret, meta["name"], meta["namespace"], body=body
        )

    def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        try:
            self._api.patch_namespaced_pod(
                name,
                namespace,
                {"metadata": {"annotations": dict(annotations)}},
                _request_timeout=self._timeout,
            )
        except kubernetes.client.ApiException as error:
            if error.status != 404:  # the pod went away meanwhile: nothing to nudge
                raise

    def event(self, pod: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
        # Posted directly rather than through kopf.event(): kopf's poster exists only inside its
        # per-object tasks, and the reconcile loop posts from its own thread.
        meta = pod["metadata"]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": _COMPONENT},
            "reportingComponent": _COMPONENT,
            "reportingInstance": socket.gethostname(),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._api.create_namespaced_event(
                meta["namespace"], cast(Any, body), _request_timeout=self._timeout
            )
        except kubernetes.client.ApiException as error:  # an Event is worth no retry loop
            _log.warning(
                "could not post Event %s on pod %s: %s", reason, meta["name"], error.reason
            )

    def _write(self, call: Any, *args: Any, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._json(
                call(*args, body, _preload_content=False, _request_timeout=self._timeout)
            )
        except kubernetes.client.ApiException as error:
            if error.status == 409:
                raise Conflict(f"Secret {body['metadata']['name']} changed meanwhile") from None
            raise

    @staticmethod
    def _json(response: Any) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(response.data))
