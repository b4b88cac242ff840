"""``hello-mtls status`` and ``renew`` on a fake API with real certificates."""

from __future__ import annotations

import base64
import datetime
import io
import json
from collections.abc import Mapping
from typing import Any

import pytest
from cryptography import x509

from mtls_cli import identities
from mtls_cli.ca_status import CAReport
from mtls_cli.cli import main
from mtls_cli.cluster import Api
from mtls_context.layout import CERT, KEY
from mtls_contract.marks import (
    ANNOTATION_BUNDLE,
    ANNOTATION_INTERMEDIATE,
    ANNOTATION_NOT_AFTER,
    ANNOTATION_RENEW,
    ANNOTATION_SERIAL,
    LABEL_MANAGED,
)
from support.api_paths import NS, Paths, deployment, healthy_install, operator_event
from support.operator_pki import PKI

UTC = datetime.UTC


def pod(namespace: str, name: str, phase: str = "Running", **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "status": {"phase": phase},
    }


def install(pki: PKI) -> tuple[Paths, x509.Certificate]:
    """shop: web-1 and web-2 share web-tls; api-1 waits for its Secret; job-1 ended; plain-1
    has no claim. batch: a pod-certificate pod."""
    api = healthy_install(datetime.datetime.now(UTC))
    for body in (
        pod("shop", "web-1", **{"hello-mtls.dev/name": "web.shop.svc"}),
        pod("shop", "web-2", **{"hello-mtls.dev/name": "web.shop.svc"}),
        pod("shop", "api-1", **{"hello-mtls.dev/name": "api.shop.svc"}),
        pod("shop", "job-1", "Succeeded", **{"hello-mtls.dev/name": "job.shop.svc"}),
        pod("shop", "plain-1"),
        pod(
            "batch",
            "worker-1",
            **{
                "hello-mtls.dev/name": "worker.batch.svc",
                "hello-mtls.dev/mode": "pod-certificate",
                ANNOTATION_INTERMEDIATE: "00" * 32,
            },
        ),
    ):
        meta = body["metadata"]
        api.put(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body)
    data = pki.data("web.shop.svc")
    leaf = x509.load_pem_x509_certificates(data[CERT])[0]
    api.put(
        "/api/v1/namespaces/shop/secrets/web-tls",
        {
            "metadata": {
                "name": "web-tls",
                "namespace": "shop",
                "labels": {LABEL_MANAGED: "true"},
                "annotations": {
                    ANNOTATION_SERIAL: f"{leaf.serial_number:x}",
                    ANNOTATION_NOT_AFTER: "2026-12-08T10:00:00Z",
                    ANNOTATION_BUNDLE: pki.view.bundle_sha256,
                },
            },
            "data": {
                CERT: base64.b64encode(data[CERT]).decode(),
                KEY: "a key the CLI never decodes",
            },
        },
    )
    now = datetime.datetime.now(UTC)
    api.put(*operator_event("shop", "web-1", "CAUnreachable", "refused", now, 1))
    api.put(*operator_event("shop", "web-1", "Issued", "certificate ...", now, 2))
    api.put(*operator_event("shop", "api-1", "IssueRefused", "name too long", now, 3))
    operator = f"/apis/apps/v1/namespaces/{NS}/deployments/hello-mtls-operator"
    api.put(operator, deployment("hello-mtls-operator", 2, 2, HELLO_MTLS_RENEW_FRACTION="0.5"))
    return api, leaf


def ca(pki: PKI, phase: str = "idle", bundle: str | None = None) -> CAReport:
    status = {
        "phase": phase,
        "trust_domain": "cluster.local",
        "roots": [{"fingerprint_sha256": "ab" * 32, "not_after": "2036-12-07T10:00:00Z"}],
        "signing": {
            "intermediate_fingerprint_sha256": pki.view.intermediate_sha256,
            "intermediate_not_after": "2027-06-07T10:00:00Z",
        },
        "bundle_sha256": bundle or pki.view.bundle_sha256,
    }
    return CAReport(status, b"", None, None)


def status(api: Paths, report: CAReport, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["status", *args], api=lambda _: api, read=lambda *_: report, out=out)
    return code, out.getvalue()


def test_status_json_lists_every_identity_with_its_certificate_and_last_error() -> None:
    pki = PKI()
    api, leaf = install(pki)
    code, out = status(api, ca(pki), "-o", "json")
    document = json.loads(out)
    assert code == 0
    rows = {(i["namespace"], i["name"]): i for i in document["identities"]}
    assert set(rows) == {
        ("batch", "worker.batch.svc"),
        ("shop", "api.shop.svc"),
        ("shop", "web.shop.svc"),
    }
    web = rows[("shop", "web.shop.svc")]
    start, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    assert web["pods"] == ["web-1", "web-2"]
    assert (web["mode"], web["secret"]) == ("secret", "web-tls")
    assert web["serial"] == f"{leaf.serial_number:x}"
    assert web["not_after"] == "2026-12-08T10:00:00Z"
    renews = (start + (end - start) * 0.5).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert web["next_renewal"] == renews  # the operator's HELLO_MTLS_RENEW_FRACTION
    assert web["last_error"] == ""  # the Issued Event came after the failure
    api_row = rows[("shop", "api.shop.svc")]
    assert (api_row["secret"], api_row["last_error"]) == ("api-tls", "IssueRefused: name too long")
    assert rows[("batch", "worker.batch.svc")]["mode"] == "pod-certificate"
    assert document["rotation"] == {"phase": "idle", "waiting_for": []}
    assert document["ca"]["phase"] == "idle"


def test_status_of_one_namespace_in_text() -> None:
    pki = PKI()
    api, leaf = install(pki)
    code, out = status(api, ca(pki), "-n", "shop")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == [
        "NAMESPACE",
        "NAME",
        "MODE",
        "SECRET",
        "PODS",
        "SERIAL",
        "NOT",
        "AFTER",
        "RENEWS",
        "SERVED",
    ]
    assert lines[1].split()[:5] == ["shop", "api.shop.svc", "secret", "api-tls", "api-1"]
    assert lines[2].split()[:5] == ["shop", "web.shop.svc", "secret", "web-tls", "web-1,web-2"]
    assert "! shop/api-tls: IssueRefused: name too long" in lines
    assert "worker" not in out
    assert "Root rotation: idle" in lines
    assert "  signing intermediate " + pki.view.intermediate_sha256[:16] in out


def test_status_says_what_a_root_rotation_waits_for() -> None:
    pki = PKI()
    api, _ = install(pki)
    _, out = status(api, ca(pki, "both-trusted", bundle="12" * 32), "-o", "json")
    assert json.loads(out)["rotation"] == {
        "phase": "both-trusted",
        "waiting_for": [
            "shop/api-tls: its first certificate",
            "shop/web-tls: the new trust bundle",
        ],
    }
    _, out = status(api, ca(pki, "new-signing"), "-o", "json")
    assert json.loads(out)["rotation"]["waiting_for"] == [
        "batch/worker-1: a certificate from the new intermediate",
        "shop/api-tls: its first certificate",
    ]


def test_status_shows_an_unreachable_ca() -> None:
    pki = PKI()
    api, _ = install(pki)

    def unreachable(_api: Api, _namespace: str) -> CAReport:
        raise OSError("no ready pod of Deployment hello-mtls/hello-mtls-ca")

    out = io.StringIO()
    assert main(["status"], api=lambda _: api, read=unreachable, out=out) == 0
    assert "CA: unreachable (no ready pod of Deployment hello-mtls/hello-mtls-ca)" in out.getvalue()


class Operator(Paths):
    """Re-issues a Secret once it carries the renew annotation, as the operator does."""

    def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        patched = super().merge_patch(path, body)
        annotations = self.objects[path]["metadata"]["annotations"]
        if ANNOTATION_RENEW in annotations:
            del annotations[ANNOTATION_RENEW]
            annotations[ANNOTATION_SERIAL] = "2a"
        return patched


def renew(api: Paths, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(["renew", *args], api=lambda _: api, out=out), out.getvalue()


def test_renew_annotates_the_secret_and_waits_for_the_new_serial() -> None:
    pki = PKI()
    api, leaf = install(pki)
    operator = Operator()
    operator.objects = api.objects
    code, out = renew(operator, "shop/web-tls")
    assert code == 0
    [(path, patch)] = operator.patches
    assert path == "/api/v1/namespaces/shop/secrets/web-tls"
    assert set(patch["metadata"]["annotations"]) == {ANNOTATION_RENEW}
    assert out.splitlines() == [
        f"asked the operator to re-issue shop/web-tls (serial {leaf.serial_number:x})",
        "re-issued: serial 2a",
    ]


def test_renew_no_wait_returns_once_asked() -> None:
    api, _ = install(PKI())
    code, _ = renew(api, "--no-wait", "shop/web-tls")
    assert code == 0
    secret = api.objects["/api/v1/namespaces/shop/secrets/web-tls"]
    assert ANNOTATION_RENEW in secret["metadata"]["annotations"]


@pytest.mark.parametrize(
    ("target", "code"), [("shop/api-tls", 1), ("shop/plain", 1), ("web-tls", 2), ("shop/", 2)]
)
def test_renew_refuses_what_hello_mtls_does_not_manage(target: str, code: int) -> None:
    api, _ = install(PKI())
    api.put("/api/v1/namespaces/shop/secrets/plain", {"metadata": {"name": "plain"}})
    assert renew(api, target)[0] == code
    assert api.patches == []


@pytest.mark.parametrize(("value", "fraction"), [("0.5", 0.5), ("1.5", 0.6667), ("soon", 0.6667)])
def test_the_renewal_fraction_is_read_as_the_operator_reads_it(value: str, fraction: float) -> None:
    # A value the operator refuses (it would not start) leaves the operator's default.
    operator = deployment("hello-mtls-operator", 1, HELLO_MTLS_RENEW_FRACTION=value)
    assert identities.renew_fraction(operator) == fraction
    assert identities.renew_fraction(None) == 0.6667
