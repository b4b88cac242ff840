"""Fast stand-ins for the operator's unit tests: an in-memory API server, and the CA's HTTP
API in process on the real CA core. The real API server and CA service are exercised by the
integration and e2e tiers."""

from __future__ import annotations

import copy
import datetime
import itertools
from collections.abc import Mapping
from typing import Any

from mtls_ca import authority, name_rules, sign_request
from mtls_ca.state import State
from mtls_ca.tls_profiles import policy_bytes
from mtls_operator.ports import CARefused, CAUnavailable, Conflict
from mtls_operator.tlssecret import Answer, CAView, parse_answer

UTC = datetime.UTC


class Cluster:
    """Secrets with resourceVersions and 409s, pod annotations and Events, in memory."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.annotations: dict[tuple[str, str], dict[str, str]] = {}
        self.events: list[tuple[str, str, str, str]] = []
        self.writes = 0
        self._versions = itertools.count(1)

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.secrets.get((namespace, name))
        return copy.deepcopy(found) if found else None

    def create_secret(self, body: dict[str, Any]) -> dict[str, Any]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if key in self.secrets:
            raise Conflict("exists")
        return self._store(key, body)

    def replace_secret(self, body: dict[str, Any]) -> dict[str, Any]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if self.secrets[key]["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
            raise Conflict("changed")
        return self._store(key, body)

    def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        self.annotations.setdefault((namespace, name), {}).update(annotations)

    def event(self, pod: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
        self.events.append((pod["metadata"]["name"], type, reason, message))

    def _store(self, key: tuple[str, str], body: dict[str, Any]) -> dict[str, Any]:
        self.writes += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        self.secrets[key] = stored
        return copy.deepcopy(stored)


class CA:
    """The CA's HTTP API in process, on the real CA core (`mtls_ca.state.State`)."""

    def __init__(self) -> None:
        self.state = State(generations=(authority.CA.create(),))
        self.signed = 0
        self.down = False
        self.mounted_credential: dict[str, bytes] = {}

    def sign(self, request: Mapping[str, Any]) -> Answer:
        if self.down:
            raise CAUnavailable("connection refused")
        self.signed += 1
        try:
            issued = sign_request.sign(
                self.state, sign_request.parse(request), role=name_rules.PROVISIONER
            )
        except ValueError as error:
            raise CARefused(str(error)) from None
        return parse_answer(sign_request.answer(self.state, issued))

    def status(self) -> CAView:
        if self.down:
            raise CAUnavailable("connection refused")
        status = self.state.status()
        return CAView(
            intermediate_sha256=status["signing"]["intermediate_fingerprint_sha256"],
            bundle_pem=self.state.bundle_pem,
            bundle_sha256=self.state.bundle_sha256,
            tls_policy=self.state.tls_policy,
            phase=self.state.phase,
            trust_domain=self.state.trust_domain,
        )

    def rotate_root(self, from_phase: str) -> None:
        self.state = self.state.rotated(expected=from_phase)

    def credential(self) -> dict[str, bytes]:
        return self.mounted_credential

    def issue_credential(self) -> dict[str, bytes]:
        """A provisioner credential from the current signer, in the Secret layout."""
        issued = self.state.signer.issue(
            uris=["spiffe://cluster.local/hello-mtls/provisioner/operator"],
            common_name="operator",
            valid_for=datetime.timedelta(days=7),
            client_only=True,
        )
        assert issued.key_pem is not None
        return {
            "tls.crt": issued.chain_pem,
            "tls.key": issued.key_pem,
            "ca.crt": self.state.bundle_pem,
            "tls-policy.json": policy_bytes(self.state.tls_policy),
        }


class Clock:
    def __init__(self) -> None:
        self.now = datetime.datetime.now(UTC)
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=seconds)
        self.mono += seconds


def pod(
    name: str, annotations: dict[str, str], *, ns: str = "shop", sa: str = "web"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": f"uid-{name}",
            "creationTimestamp": f"2026-01-01T00:00:0{len(name) % 10}Z",
            "annotations": annotations,
        },
        "spec": {"serviceAccountName": sa},
    }
