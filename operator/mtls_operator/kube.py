"""The few Kubernetes API calls the operator makes, on the official client, as plain dicts."""

from __future__ import annotations

import datetime
import json
import logging
import socket
from collections.abc import Iterator, Mapping
from typing import Any, cast

import kubernetes

from mtls_operator.ports import Conflict, Forbidden, Invalid

__all__ = ["Kube", "LeaseAPI", "PodCertificateAPI", "load_config"]

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
        return self._read(self._api.read_namespaced_secret, name, namespace)

    def create_secret(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._write(
            self._api.create_namespaced_secret, body["metadata"]["namespace"], body=body
        )

    def replace_secret(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = _versioned(body)["metadata"]
        return self._write(
            self._api.replace_namespaced_secret, meta["name"], meta["namespace"], body=body
        )

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read(self._api.read_namespaced_config_map, name, namespace)

    def create_config_map(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._write(
            self._api.create_namespaced_config_map, body["metadata"]["namespace"], body=body
        )

    def replace_config_map(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = _versioned(body)["metadata"]
        return self._write(
            self._api.replace_namespaced_config_map, meta["name"], meta["namespace"], body=body
        )

    def annotate_pod(
        self, namespace: str, name: str, annotations: Mapping[str, str], *, uid: str = ""
    ) -> bool:
        """Patch ``annotations`` onto the pod; False if it is gone (or, with ``uid``, the name is
        another pod's now: a UID in a patch is a precondition, refused with 409); `Forbidden`
        if RBAC or the operator's write policy refuse it."""
        metadata: dict[str, Any] = {"annotations": dict(annotations)}
        if uid:
            metadata["uid"] = uid
        try:
            self._api.patch_namespaced_pod(
                name, namespace, {"metadata": metadata}, _request_timeout=self._timeout
            )
        except kubernetes.client.ApiException as error:
            if error.status == 404 or (uid and error.status == 409):
                return False
            if error.status == 403:
                raise Forbidden(_api_message(error)) from None
            raise
        return True

    def event(self, pod: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
        """Post an Event about ``pod`` (a dict with its metadata's namespace, name and uid)."""
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

    def ready_endpoints(self, namespace: str, service: str, port: str) -> list[str]:
        """``ADDRESS:PORT`` of every ready endpoint of ``service`` (its EndpointSlices), on its
        port named ``port``: the CA signer pods whose material a root rotation waits for.

        Raises:
            OSError: if the API server cannot be asked.
        """
        api = kubernetes.client.DiscoveryV1Api(self._api.api_client)
        try:
            slices = api.list_namespaced_endpoint_slice(
                namespace,
                label_selector=f"kubernetes.io/service-name={service}",
                _preload_content=False,
                _request_timeout=self._timeout,
            )
        except kubernetes.client.ApiException as error:
            raise OSError(
                f"cannot list the endpoints of {namespace}/{service}: {error.reason}"
            ) from None
        found = []
        for item in self._json(slices).get("items") or []:
            numbers = [p["port"] for p in item.get("ports") or [] if p.get("name") == port]
            for endpoint in item.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready") is False:
                    continue
                found += [f"{a}:{n}" for a in endpoint["addresses"] for n in numbers]
        return sorted(found)

    def _read(self, call: Any, name: str, namespace: str) -> dict[str, Any] | None:
        """One object as the API's JSON; None if it does not exist."""
        try:
            return self._json(
                call(name, namespace, _preload_content=False, _request_timeout=self._timeout)
            )
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return None
            raise

    def _write(self, call: Any, *args: Any, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._json(
                call(*args, body, _preload_content=False, _request_timeout=self._timeout)
            )
        except kubernetes.client.ApiException as error:
            if error.status == 409:
                kind = body.get("kind", "Secret")
                raise Conflict(f"{kind} {body['metadata']['name']} changed meanwhile") from None
            raise

    @staticmethod
    def _json(response: Any) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(response.data))


class PodCertificateAPI:
    """`ports.PodCertificates` on the client's ``CertificatesV1Api`` (certificates.k8s.io/v1).

    Bodies stay the API's JSON (``_preload_content=False``, a watch with ``deserialize=False``):
    the signer reads and writes fields such as ``stubPKCS10Request`` as the API server has them.
    """

    _WATCH_SECONDS = 300

    def __init__(self, kube: Kube, *, request_timeout: float = 30.0) -> None:
        self._kube = kube
        self._api = kubernetes.client.CertificatesV1Api(kube._api.api_client)
        self._timeout = request_timeout

    def list_requests(self, signer_name: str) -> tuple[list[dict[str, Any]], str]:
        listing = Kube._json(
            self._api.list_pod_certificate_request_for_all_namespaces(
                field_selector=f"spec.signerName={signer_name}",
                _preload_content=False,
                _request_timeout=self._timeout,
            )
        )
        return listing.get("items") or [], listing["metadata"].get("resourceVersion", "")

    def watch_requests(
        self, signer_name: str, resource_version: str
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        stream = kubernetes.watch.Watch().stream(  # type: ignore[no-untyped-call]
            self._api.list_pod_certificate_request_for_all_namespaces,
            field_selector=f"spec.signerName={signer_name}",
            resource_version=resource_version,
            allow_watch_bookmarks=False,
            timeout_seconds=self._WATCH_SECONDS,
            deserialize=False,
            _request_timeout=self._WATCH_SECONDS + 30,
        )
        # An ERROR event (410 Gone: the version is too old) ends the stream with an exception
        # (a KeyError from the client with deserialize=False); the caller lists again.
        for event in stream:
            yield event["type"], event["object"]

    def get_request(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return Kube._json(
                self._api.read_namespaced_pod_certificate_request(
                    name, namespace, _preload_content=False, _request_timeout=self._timeout
                )
            )
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return None
            raise

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._kube._read(self._kube._api.read_namespaced_pod, name, namespace)

    def update_request_status(self, body: dict[str, Any]) -> bool:
        meta = _versioned(body)["metadata"]
        try:
            self._write(
                self._api.replace_namespaced_pod_certificate_request_status,
                meta["name"],
                meta["namespace"],
                body=body,
            )
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def annotate_pod(
        self, namespace: str, name: str, uid: str, annotations: Mapping[str, str]
    ) -> bool:
        return self._kube.annotate_pod(namespace, name, annotations, uid=uid)

    def get_trust_bundle(self, name: str) -> dict[str, Any] | None:
        try:
            return Kube._json(
                self._api.read_cluster_trust_bundle(
                    name, _preload_content=False, _request_timeout=self._timeout
                )
            )
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return None
            raise

    def create_trust_bundle(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._write(self._api.create_cluster_trust_bundle, body=body)

    def replace_trust_bundle(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._write(
            self._api.replace_cluster_trust_bundle, _versioned(body)["metadata"]["name"], body=body
        )

    def event(self, pod: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
        self._kube.event(pod, type=type, reason=reason, message=message)

    def _write(self, call: Any, *args: Any, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return Kube._json(
                call(*args, body, _preload_content=False, _request_timeout=self._timeout)
            )
        except kubernetes.client.ApiException as error:
            if error.status == 409:
                raise Conflict(f"{body['kind']} {body['metadata']['name']} changed") from None
            if error.status == 422:
                raise Invalid(_api_message(error)) from None
            raise


class LeaseAPI:
    """`ports.Leases` on the client's ``CoordinationV1Api``; bodies are the API's JSON.

    Each call gives up after ``request_timeout`` seconds: the elector must not hang on a dead
    connection while its renew deadline runs out (`leadership.Timing`).
    """

    def __init__(self, kube: Kube, *, request_timeout: float) -> None:
        self._api = kubernetes.client.CoordinationV1Api(kube._api.api_client)
        self._timeout = request_timeout

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return Kube._json(
                self._api.read_namespaced_lease(
                    name, namespace, _preload_content=False, _request_timeout=self._timeout
                )
            )
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return None
            raise

    def create_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._write(
            self._api.create_namespaced_lease, body["metadata"]["namespace"], body=body
        )

    def replace_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = _versioned(body)["metadata"]
        return self._write(
            self._api.replace_namespaced_lease, meta["name"], meta["namespace"], body=body
        )

    def _write(self, call: Any, *args: Any, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return Kube._json(
                call(*args, body, _preload_content=False, _request_timeout=self._timeout)
            )
        except kubernetes.client.ApiException as error:
            if error.status == 409:
                raise Conflict(f"Lease {body['metadata']['name']} changed meanwhile") from None
            raise


def _versioned(body: dict[str, Any]) -> dict[str, Any]:
    """``body``, if it carries the resourceVersion it was read at. A replace without one
    overwrites whatever is stored (the API server allows that for most kinds), e.g. what
    another operator replica wrote meanwhile.

    Raises:
        ValueError: the body has no resourceVersion.
    """
    meta = body["metadata"]
    if not meta.get("resourceVersion"):
        kind = body.get("kind", "object")
        raise ValueError(f"{kind} {meta.get('name')} has no resourceVersion to replace at")
    return body


def _api_message(error: kubernetes.client.ApiException) -> str:
    try:
        return str(json.loads(error.body or "")["message"])
    except (ValueError, KeyError, TypeError):
        return str(error.reason)
