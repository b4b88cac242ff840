"""Offline validation of Kubernetes objects against the API's own OpenAPI v2 document.

The document is ``api/openapi-spec/swagger.json`` of the exact Kubernetes version (the local
cluster's build keeps it; see ``K8S_OPENAPI`` in ``hack/versions.sh``). The check is
strict the way kubeconform's strict mode is: a field the API does not define is an error, where
the document itself would allow anything. Two of its types are widened to what the API server
accepts: IntOrString (an integer or a string) and Quantity (a string or a number).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema

__all__ = ["load_validator"]

_WIDENED: dict[str, dict[str, Any]] = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": ["integer", "string"]},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": ["string", "number"]},
}


def load_validator(swagger: Path) -> Callable[[dict[str, Any]], list[str]]:
    """A function that returns the schema errors of one object (empty when it is valid)."""
    definitions = json.loads(swagger.read_text())["definitions"]
    strict = {name: _strict(schema) for name, schema in definitions.items()}
    strict.update(_WIDENED)
    by_kind: dict[tuple[str, str], str] = {}
    for name, schema in definitions.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            by_kind[(api_version, gvk["kind"])] = name
    validators: dict[str, jsonschema.Draft4Validator] = {}

    def errors(obj: dict[str, Any]) -> list[str]:
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        where = f"{kind} {obj.get('metadata', {}).get('name', '?')}"
        name = by_kind.get((api_version, kind))
        if name is None:
            return [f"{where}: the API has no kind {kind} in {api_version!r}"]
        if name not in validators:
            validators[name] = jsonschema.Draft4Validator(
                {"$ref": f"#/definitions/{name}", "definitions": strict}
            )
        return [
            f"{where}: {'.'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
            for error in validators[name].iter_errors(obj)
        ]

    return errors


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` in which objects with listed properties allow no others."""
    copy = dict(schema)
    if "properties" in copy:
        copy["properties"] = {k: _strict(v) for k, v in copy["properties"].items()}
        copy.setdefault("additionalProperties", False)
    if isinstance(copy.get("additionalProperties"), dict):
        copy["additionalProperties"] = _strict(copy["additionalProperties"])
    if isinstance(copy.get("items"), dict):
        copy["items"] = _strict(copy["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in copy:
            copy[key] = [_strict(item) for item in copy[key]]
    return copy
