"""The Kubernetes Secrets the CA owns: its state (``--state k8s:NAMESPACE/NAME``) and the
operator's provisioner credential.

The only module of ``mtls_ca`` that talks to the API server. Creation is create-if-absent: two
replicas that start at once both try to create the Secret, the API server accepts one, the other
gets 409 Conflict and adopts the winner's CA. Updates are compare-and-swap on ``resourceVersion``
(a replace carrying a stale version gets 409 and is retried on fresh data), so concurrent
rotations or renewals never overwrite each other.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from .state import State, StateNotFound

__all__ = ["DATA_KEY", "SecretStore", "TLSSecret"]

DATA_KEY = "state.json"
_UPDATE_ATTEMPTS = 10
_STATE_LABELS = {"app.kubernetes.io/name": "hello-mtls", "app.kubernetes.io/component": "ca-state"}
_CREDENTIAL_LABELS = {
    "app.kubernetes.io/name": "hello-mtls",
    "app.kubernetes.io/component": "provisioner-credential",
}


class SecretStore:
    """The CA state in Secret ``name`` of ``namespace``."""

    def __init__(self, namespace: str, name: str, api: Any = None) -> None:
        self.namespace = namespace
        self.name = name
        self.location = f"k8s:{namespace}/{name}"
        self._api = api

    def load(self) -> State:
        return self._decode(self._read_existing())

    def create(self, state: State) -> State:
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=self.name, namespace=self.namespace, labels=_STATE_LABELS
            ),
            type="Opaque",
            data={DATA_KEY: base64.b64encode(state.to_json()).decode()},
        )
        try:
            self.api.create_namespaced_secret(self.namespace, body)
        except ApiException as e:
            if e.status != 409:
                raise OSError(
                    f"cannot create Secret {self.location}: {e.status} {e.reason}"
                ) from None
            return self.load()  # another replica won the race: use its CA
        return state

    def update(self, change: Callable[[State], State]) -> State:
        for _ in range(_UPDATE_ATTEMPTS):
            secret = self._read_existing()
            new = change(self._decode(secret))
            secret.data = {
                **(secret.data or {}),
                DATA_KEY: base64.b64encode(new.to_json()).decode(),
            }
            try:
                # The body keeps metadata.resourceVersion: the API server refuses a stale one.
                self.api.replace_namespaced_secret(self.name, self.namespace, secret)
            except ApiException as e:
                if e.status == 409:
                    continue
                raise OSError(
                    f"cannot update Secret {self.location}: {e.status} {e.reason}"
                ) from None
            return new
        raise OSError(f"Secret {self.location} changed during each of {_UPDATE_ATTEMPTS} updates")

    def version(self) -> str:
        secret = self._read()
        return "" if secret is None else str(secret.metadata.resource_version)

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = _core_api()
        return self._api

    def _read(self) -> Any:
        try:
            return self.api.read_namespaced_secret(self.name, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise OSError(f"cannot read Secret {self.location}: {e.status} {e.reason}") from None

    def _read_existing(self) -> Any:
        secret = self._read()
        if secret is None:
            raise StateNotFound(f"no CA state in Secret {self.location}")
        return secret

    def _decode(self, secret: Any) -> State:
        data = (secret.data or {}).get(DATA_KEY)
        if data is None:
            raise ValueError(f"Secret {self.location} has no '{DATA_KEY}' key")
        return State.from_json(base64.b64decode(data))


class TLSSecret:
    """A ``kubernetes.io/tls`` Secret the CA keeps current: the operator's provisioner credential.

    The keys are the certificate directory's (``tls.crt``, ``tls.key``, ``ca.crt``,
    ``tls-policy.json``), so the operator mounts it like any workload mounts its certificate.
    """

    def __init__(self, namespace: str, name: str, api: Any = None) -> None:
        self.namespace = namespace
        self.name = name
        self.location = f"k8s:{namespace}/{name}"
        self._api = api

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = _core_api()
        return self._api

    def read(self) -> dict[str, bytes] | None:
        """The Secret's files, or ``None`` if it does not exist."""
        try:
            secret = self.api.read_namespaced_secret(self.name, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise OSError(f"cannot read Secret {self.location}: {e.status} {e.reason}") from None
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    def write(self, files: dict[str, bytes]) -> bool:
        """Create or replace the Secret with ``files``.

        Returns:
            False if another writer got there first (409); the caller checks again later.
        """
        data: dict[str, bytes | str] = {k: base64.b64encode(v).decode() for k, v in files.items()}
        try:
            secret = self.api.read_namespaced_secret(self.name, self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise OSError(
                    f"cannot read Secret {self.location}: {e.status} {e.reason}"
                ) from None
            secret = None
        try:
            if secret is None:
                body = client.V1Secret(
                    metadata=client.V1ObjectMeta(
                        name=self.name, namespace=self.namespace, labels=_CREDENTIAL_LABELS
                    ),
                    type="kubernetes.io/tls",
                    data=data,
                )
                self.api.create_namespaced_secret(self.namespace, body)
            else:
                secret.data = data
                self.api.replace_namespaced_secret(self.name, self.namespace, secret)
        except ApiException as e:
            if e.status == 409:
                return False
            raise OSError(f"cannot write Secret {self.location}: {e.status} {e.reason}") from None
        return True


def _core_api() -> Any:
    """The API client: in a pod its service account, elsewhere ``KUBECONFIG``."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        try:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError) as e:
            raise OSError(f"no Kubernetes configuration (not in a pod, KUBECONFIG: {e})") from None
    return client.CoreV1Api()
