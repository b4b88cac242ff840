"""The one Kubernetes object the CA writes: the operator's provisioner credential Secret; and
the API client the CA's calls use (this one and `mtls_ca.signer_auth`'s TokenReview).

The CA's own state is not here: it stays in a directory on the root holder's volume
(`mtls_ca.state.DirectoryStore`).
"""

from __future__ import annotations

import base64
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

__all__ = ["TLSSecret", "api_client"]

_CREDENTIAL_LABELS = {
    "app.kubernetes.io/name": "hello-mtls",
    "app.kubernetes.io/component": "provisioner-credential",
}


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
            self._api = client.CoreV1Api(api_client())
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


def api_client() -> Any:
    """The API client: in a pod its service account, elsewhere ``KUBECONFIG``."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        try:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError) as e:
            raise OSError(f"no Kubernetes configuration (not in a pod, KUBECONFIG: {e})") from None
    return client.ApiClient()
