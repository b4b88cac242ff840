"""Every call the CLI makes to the Kubernetes API, behind the small `Api` port its commands use
(unit tests give them a fake), and `KubeApi`, the port on the ``kubernetes`` client with the
user's kubeconfig."""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

__all__ = ["Api", "ApiError", "Executed", "KubeApi", "ca_connect", "ca_pod"]

CA_DEPLOYMENT = "hello-mtls-ca"
"""The root holder: the CA whose ``GET /status`` names every root and the rotation phase."""
CA_READ_ONLY_PORT = 8443
_TIMEOUT = 15
EXEC_TIMEOUT = 120
"""Seconds a command run in a pod (`Api.exec`) may take."""


class ApiError(Exception):
    """The API server refused or could not answer (the message says which call and why)."""


@dataclass(frozen=True)
class Executed:
    """What a command run in a pod said, and its exit status."""

    returncode: int
    stdout: str
    stderr: str


class Api(Protocol):
    """The reads and the writes of the CLI, by API path."""

    def get(self, path: str, **query: str) -> dict[str, Any] | None:
        """``GET path`` (a list when the path names a collection); None when it is 404."""

    def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``PATCH path`` with a JSON merge patch."""

    def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST path`` (a collection): create ``body`` in it."""

    def delete(self, path: str) -> None:
        """``DELETE path``; nothing when it is already gone."""

    def connect(self, namespace: str, pod: str, port: int) -> socket.socket:
        """A connection to ``port`` of ``pod`` (a port-forward through the API server)."""

    def exec(
        self, namespace: str, pod: str, command: Sequence[str], stdin: bytes | None = None
    ) -> Executed:
        """Run ``command`` in the first container of ``pod`` (``pods/exec``), with ``stdin``."""


def ca_pod(api: Api, namespace: str) -> str:
    """The name of a ready pod of the CA's Deployment (the root holder).

    Raises:
        ApiError: no such Deployment, or none of its pods is ready.
    """
    deployment = api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{CA_DEPLOYMENT}")
    if deployment is None:
        raise ApiError(f"no Deployment {namespace}/{CA_DEPLOYMENT}")
    labels = deployment["spec"]["selector"].get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    pods = api.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=selector) or {}
    for pod in pods.get("items") or []:
        conditions = (pod.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            return str(pod["metadata"]["name"])
    raise ApiError(f"no ready pod of Deployment {namespace}/{CA_DEPLOYMENT}")


def ca_connect(api: Api, namespace: str) -> tuple[str, socket.socket]:
    """A connection to the read-only port of a ready pod of the CA's Deployment, and its name.

    Raises:
        ApiError: no such Deployment, or none of its pods is ready.
    """
    name = ca_pod(api, namespace)
    return name, api.connect(namespace, name, CA_READ_ONLY_PORT)


class KubeApi:
    """`Api` on the ``kubernetes`` client: the kubeconfig (``KUBECONFIG``, ``--context``) or,
    inside a pod, its ServiceAccount."""

    def __init__(self, context: str | None = None) -> None:
        import kubernetes

        try:
            kubernetes.config.load_kube_config(context=context)  # type: ignore[no-untyped-call]
        except kubernetes.config.ConfigException:
            if context is not None:
                raise
            kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
        self._client = kubernetes.client.ApiClient()
        self._core = kubernetes.client.CoreV1Api(self._client)
        self._forwards: list[Any] = []

    def get(self, path: str, **query: str) -> dict[str, Any] | None:
        try:
            return cast(dict[str, Any], self._call("GET", path, query=query))
        except ApiError as error:
            if str(error).startswith("404 "):
                return None
            raise

    def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        content = "application/merge-patch+json"
        return cast(dict[str, Any], self._call("PATCH", path, body=body, content=content))

    def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("POST", path, body=body))

    def delete(self, path: str) -> None:
        try:
            self._call("DELETE", path, query={"gracePeriodSeconds": "0"})
        except ApiError as error:
            if not str(error).startswith("404 "):
                raise

    def connect(self, namespace: str, pod: str, port: int) -> socket.socket:
        from kubernetes.stream import portforward

        forward = portforward(
            self._core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port)
        )
        self._forwards.append(forward)
        connection = cast(socket.socket, forward.socket(port))
        connection.setblocking(True)
        return connection

    def exec(
        self, namespace: str, pod: str, command: Sequence[str], stdin: bytes | None = None
    ) -> Executed:
        import kubernetes
        from kubernetes.stream import stream

        try:
            session = stream(
                self._core.connect_get_namespaced_pod_exec,
                pod,
                namespace,
                command=list(command),
                stdin=stdin is not None,
                stdout=True,
                stderr=True,
                tty=False,
                _preload_content=False,
            )
            if stdin is not None:
                session.write_stdin(stdin)
                session.close_channel(0)  # end of input (the v5 exec protocol, Kubernetes 1.30+)
            session.run_forever(timeout=EXEC_TIMEOUT)
            if session.is_open():
                session.close()
                raise ApiError(f"exec in {namespace}/{pod}: no answer within {EXEC_TIMEOUT} s")
            out, err = session.read_channel(1), session.read_channel(2)
            return Executed(int(session.returncode), out, err)
        except (kubernetes.client.ApiException, OSError, ValueError) as error:
            raise ApiError(f"exec in {namespace}/{pod}: {error}") from None

    def close(self) -> None:
        for forward in self._forwards:
            forward.close()
        self._client.close()  # type: ignore[no-untyped-call]

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        content: str = "application/json",
    ) -> object:
        import kubernetes
        import urllib3

        method_, url, headers, body_, _ = self._client.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params={"Accept": "application/json", "Content-Type": content},
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._client.call_api(
                method_, url, header_params=headers, body=body_, _request_timeout=_TIMEOUT
            )
            data = response.read()  # type: ignore[no-untyped-call]
        except (kubernetes.client.ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            raise ApiError(f"{method} {path}: {error}") from None
        if not 200 <= response.status <= 299:
            try:
                reason = json.loads(data).get("message") or response.reason
            except (ValueError, AttributeError):
                reason = response.reason
            raise ApiError(f"{response.status} {method} {path}: {reason}")
        return json.loads(data)
