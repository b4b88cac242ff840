"""Open a CA state store from its command-line spelling: ``DIR`` or ``k8s:NAMESPACE/NAME``."""

from __future__ import annotations

from pathlib import Path

from .state import DirectoryStore, Store

__all__ = ["open_store"]


def open_store(spec: str) -> Store:
    """A `DirectoryStore` for a path, a Kubernetes Secret store for ``k8s:NS/NAME``.

    Raises:
        ValueError: if a ``k8s:`` spec is not ``k8s:NAMESPACE/NAME``.
    """
    if not spec.startswith("k8s:"):
        return DirectoryStore(Path(spec))
    namespace, _, name = spec[4:].partition("/")
    if not namespace or not name or "/" in name:
        raise ValueError(f"state '{spec}' is not like k8s:NAMESPACE/SECRET-NAME")
    from .k8s_secrets import SecretStore  # the kubernetes client loads only when asked for

    return SecretStore(namespace, name)
