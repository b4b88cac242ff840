"""A fake `mtls_cli.cluster.Api`: objects by API path, collections filtered as the API server
filters them (label and field selectors of the forms the CLI sends), and a fake installed
product that every check passes on."""

from __future__ import annotations

import copy
import datetime
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from mtls_cli.cluster import ApiError, Executed
from mtls_cli.network_probe import LABEL

NS = "hello-mtls"
NOW = datetime.datetime(2026, 12, 7, 10, 0, tzinfo=datetime.UTC)
"""The clock of the tests that call `mtls_cli.checks.run_checks` (`mtls_cli.cli.main` reads the
real one: give `healthy_install` that)."""


def rfc3339(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Paths:
    """Objects by path; ``get`` of a collection path lists the objects stored under it."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.failing: set[str] = set()
        self.execs: list[tuple[str, str, list[str], bytes | None]] = []
        self.answer = Executed(0, "{}", "")
        """What every `exec` answers."""
        self.deleted: list[str] = []
        self.created: list[dict[str, Any]] = []
        self.probe_exit: int | None = 0
        """How the network probe pod ends (0: the signing port refused it); None: never."""

    def put(self, path: str, body: dict[str, Any]) -> None:
        self.objects[path] = body

    def get(self, path: str, **query: str) -> dict[str, Any] | None:
        if path in self.failing:
            raise ApiError(f"503 GET {path}: the server is currently unable to handle the request")
        if path in self.objects:
            return copy.deepcopy(self.objects[path])
        items = [
            copy.deepcopy(body)
            for key, body in sorted(self.objects.items())
            if _in_collection(key, path) and _selected(body, query)
        ]
        if not items and not _is_collection(path):
            return None
        return {"items": items}

    def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self.patches.append((path, dict(body)))
        _merge(self.objects[path], body)
        return copy.deepcopy(self.objects[path])

    def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Stores ``body``; a pod of `mtls_cli.network_probe` has run to ``probe_exit``."""
        stored = copy.deepcopy(dict(body))
        labels = stored["metadata"].get("labels") or {}
        if labels.get("app.kubernetes.io/name") == LABEL and self.probe_exit is not None:
            terminated = {"exitCode": self.probe_exit}
            stored["status"] = {"containerStatuses": [{"state": {"terminated": terminated}}]}
        self.objects[f"{path}/{stored['metadata']['name']}"] = stored
        self.created.append(stored)
        return copy.deepcopy(stored)

    def delete(self, path: str) -> None:
        self.deleted.append(path)
        self.objects.pop(path, None)

    def connect(self, namespace: str, pod: str, port: int) -> socket.socket:
        raise OSError(f"no port-forward in unit tests ({namespace}/{pod}:{port})")

    def exec(
        self, namespace: str, pod: str, command: Sequence[str], stdin: bytes | None = None
    ) -> Executed:
        self.execs.append((namespace, pod, list(command), stdin))
        return self.answer


def _is_collection(path: str) -> bool:
    last = path.rstrip("/").split("/")[-1]
    return last in {"pods", "secrets", "events", "networkpolicies"}


def _in_collection(key: str, collection: str) -> bool:
    """``/api/v1/pods`` lists ``/api/v1/namespaces/NS/pods/NAME`` of every namespace."""
    parts, wanted = key.split("/"), collection.split("/")
    if "namespaces" not in wanted and "namespaces" in parts:
        i = parts.index("namespaces")
        parts = parts[:i] + parts[i + 2 :]
    return parts[:-1] == wanted


def _selected(body: Mapping[str, Any], query: Mapping[str, str]) -> bool:
    labels = body.get("metadata", {}).get("labels") or {}
    for term in filter(None, query.get("labelSelector", "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    for term in filter(None, query.get("fieldSelector", "").split(",")):
        key, _, value = term.partition("=")
        if key == "source" and (body.get("source") or {}).get("component") != value:
            return False
    return True


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, Mapping):
            _merge(target.setdefault(key, {}), value)
        elif value is None:
            target.pop(key, None)
        else:
            target[key] = value


def deployment(name: str, ready: int, replicas: int = 1, **env: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": name,
                            "image": f"hello-mtls/{name.removeprefix('hello-mtls-')}:dev",
                            "env": [{"name": k, "value": v} for k, v in env.items()],
                        }
                    ]
                }
            },
        },
        "status": {"readyReplicas": ready},
    }


def healthy_install(now: datetime.datetime = NOW) -> Paths:
    """Everything `mtls_cli.checks` looks at, as a default install on Kubernetes 1.37 has it,
    with the operator's Lease renewed 2 s before ``now``."""
    api = Paths()
    api.put("/version", {"major": "1", "minor": "37", "gitVersion": "v1.37.2"})
    api.put(
        "/apis/admissionregistration.k8s.io/v1",
        {
            "resources": [
                {"name": "validatingadmissionpolicies", "kind": "ValidatingAdmissionPolicy"},
                {"name": "validatingadmissionpolicies/status", "kind": "ValidatingAdmissionPolicy"},
                {"name": "mutatingadmissionpolicies", "kind": "MutatingAdmissionPolicy"},
            ]
        },
    )
    group = "/apis/admissionregistration.k8s.io/v1"
    for plural, name in (
        ("validatingadmissionpolicies", "hello-mtls-names"),
        ("validatingadmissionpolicies", "hello-mtls-operator"),
        ("mutatingadmissionpolicies", "hello-mtls-wiring"),
    ):
        api.put(f"{group}/{plural}/{name}", {"metadata": {"name": name}})
        api.put(f"{group}/{plural[:-3]}ybindings/{name}", {"metadata": {"name": name}})
    apps = f"/apis/apps/v1/namespaces/{NS}/deployments"
    api.put(f"{apps}/hello-mtls-ca", deployment("hello-mtls-ca", 1))
    api.put(f"{apps}/hello-mtls-operator", deployment("hello-mtls-operator", 2, 2))
    api.put(
        f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/hello-mtls-operator",
        {
            "spec": {
                "holderIdentity": "hello-mtls-operator-7d9f-abcde_1a2b3c4d",
                "leaseDurationSeconds": 10,
                "renewTime": rfc3339(now - datetime.timedelta(seconds=2)),
            }
        },
    )
    for name in ("hello-mtls-ca", "hello-mtls-operator"):
        api.put(
            f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/{name}",
            {"metadata": {"name": name}},
        )
    return api


def operator_event(
    namespace: str, pod: str, reason: str, message: str, at: datetime.datetime, number: int
) -> tuple[str, dict[str, Any]]:
    """An Event as `mtls_operator.kube.Kube.event` posts it, and its path."""
    return (
        f"/api/v1/namespaces/{namespace}/events/{pod}.{number}",
        {
            "metadata": {"name": f"{pod}.{number}", "namespace": namespace},
            "involvedObject": {"kind": "Pod", "name": pod, "namespace": namespace},
            "type": "Normal" if reason == "Issued" else "Warning",
            "reason": reason,
            "message": message,
            "source": {"component": "hello-mtls-operator"},
            "lastTimestamp": rfc3339(at),
        },
    )
