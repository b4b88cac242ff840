"""The federated trust domains: the chart's list, SPIFFE bundles read into roots, fetches on the
refresh hint with the last good bundle kept, and the files in every Secret and ConfigMap."""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client import REGISTRY

from mtls_ca import spiffe_bundle
from mtls_ca.authority import CA as Authority
from mtls_ca.state import State
from mtls_context.layout import federated_bundle
from mtls_contract.marks import ANNOTATION_MODE, ANNOTATION_NAME
from mtls_operator.bundle_fetcher import FederatedBundles, fetch
from mtls_operator.claims import Rules
from mtls_operator.federation import (
    HTTPS_SPIFFE,
    HTTPS_WEB,
    MIN_REFRESH_HINT,
    Bundle,
    Source,
    parse_sources,
    roots_from_bundle,
)
from mtls_operator.reconciler import Reconciler
from mtls_operator.settings import Settings
from mtls_operator.tlssecret import POLICY_CONFIG_MAP, decode_data
from support.operator_fakes import CA, Clock, Cluster, pod
from support.trust_domains import OTHER, TrustDomain

OTHER_FILE = federated_bundle(OTHER)
SOURCE = Source(OTHER, "https://bundle.other.example/", HTTPS_WEB)


@pytest.fixture(scope="module")
def other() -> TrustDomain:
    return TrustDomain(OTHER)


def test_the_chart_list_is_read_with_clear_errors(other: TrustDomain) -> None:
    spiffe = {
        "trustDomain": OTHER,
        "bundleEndpointURL": "https://10.0.0.1:8443/spiffe-bundle",
        "profile": HTTPS_SPIFFE,
        "endpointSPIFFEID": "spiffe://other.example/spire/server",
        "bundle": other.root_pem.decode(),
    }
    web = {"trustDomain": "web.example", "bundleEndpointURL": "https://bundle.web.example/"}
    (first, second) = parse_sources(json.dumps([spiffe, web]))
    assert first.file == "federated-other.example.crt" and first.bootstrap_pem == other.root_pem
    assert second.profile == HTTPS_WEB and second.bootstrap_pem == b""
    assert parse_sources("") == ()
    for entries, why in [
        ({}, "expected a JSON list"),
        ([{"bundleEndpointURL": "https://x/"}], "#1: trustDomain is required"),
        ([{**web, "trustDomain": "Web.Example"}], "is not"),
        ([{**web, "bundleEndpointURL": "http://x/"}], "must be an https:// URL"),
        ([{**web, "profile": "https"}], "profile must be https_web or https_spiffe"),
        ([{**spiffe, "endpointSPIFFEID": ""}], "needs endpointSPIFFEID"),
        ([{**spiffe, "bundle": ""}], "needs a bootstrap bundle"),
        ([{**spiffe, "bundle": "junk"}], "bundle is not PEM"),
        ([web, web], "web.example is listed twice"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_sources(json.dumps(entries))


def test_roots_are_read_from_the_bundle_the_ca_serves() -> None:
    state = State(generations=(Authority.create(),), bundle_sequence=3)
    served = spiffe_bundle.bundle(state)
    served["keys"].append({"kty": "EC", "use": "jwt-svid", "kid": "k", "crv": "P-256"})
    bundle = roots_from_bundle(served)
    assert bundle.roots_pem == state.bundle_pem
    assert bundle.refresh_hint == spiffe_bundle.REFRESH_HINT
    assert bundle.sequence == state.bundle_sequence


def test_a_bundle_that_is_not_one_is_refused(other: TrustDomain) -> None:
    leaf = other.ca.issue("x.test", valid_for=datetime.timedelta(hours=1)).certificate
    der = base64.b64encode(leaf.public_bytes(Encoding.DER)).decode()
    for document, why in [
        ([], "no 'keys' list"),
        ({"keys": []}, "holds no x509-svid key"),
        ({"keys": [{"use": "x509-svid", "x5c": []}]}, "exactly one certificate"),
        ({"keys": [{"use": "x509-svid", "x5c": ["!!"]}]}, "does not parse"),
        ({"keys": [{"use": "x509-svid", "x5c": [der]}]}, "is not a CA"),
    ]:
        with pytest.raises(ValueError, match=why):
            roots_from_bundle(document)
    root = base64.b64encode(other.ca.root.public_bytes(Encoding.DER)).decode()
    tiny = roots_from_bundle(
        {"keys": [{"use": "x509-svid", "x5c": [root]}], "spiffe_refresh_hint": 0}
    )
    assert tiny.refresh_hint == MIN_REFRESH_HINT


def stale(name: str = OTHER) -> float | None:
    return REGISTRY.get_sample_value(
        "hello_mtls_operator_federated_bundle_stale", {"trust_domain": name}
    )


class Endpoint:
    """Answers like a bundle endpoint, or fails, as a test says."""

    def __init__(self, roots: bytes, hint: int = 30) -> None:
        self.answer: Bundle | Exception = Bundle(roots, hint, 1)
        self.calls = 0

    def __call__(self, source: Source, trusted: bytes) -> Bundle:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_bundles_are_fetched_on_their_hint_and_the_last_good_one_is_kept(
    other: TrustDomain, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    endpoint = Endpoint(other.root_pem)
    bundles = FederatedBundles([SOURCE], fetcher=endpoint, monotonic=lambda: clock.mono)
    assert bundles.files() == {}
    assert bundles.poll() and bundles.files() == {OTHER_FILE: other.root_pem}
    assert stale() == 0
    clock.advance(29)
    assert not bundles.poll() and endpoint.calls == 1
    endpoint.answer = OSError("connection refused")
    clock.advance(1)
    assert not bundles.poll() and endpoint.calls == 2
    assert bundles.files() == {OTHER_FILE: other.root_pem}  # the last good one
    assert "bundle of other.example not fetched: connection refused" in caplog.text
    clock.advance(9)
    bundles.poll()
    assert endpoint.calls == 2  # retried after RETRY_SECONDS, within the hint
    clock.advance(1)
    bundles.poll()
    assert endpoint.calls == 3 and stale() == 0
    for _ in range(8):
        clock.advance(10)
        bundles.poll()
    assert stale() == 1 and "bundle of other.example is stale" in caplog.text
    assert bundles.files() == {OTHER_FILE: other.root_pem}
    endpoint.answer = Bundle(other.root_pem + other.root_pem, 30, 2)
    clock.advance(10)
    assert bundles.poll() and stale() == 0


def reconciler(cluster: Cluster, ca: CA, clock: Clock, bundles: FederatedBundles) -> Reconciler:
    return Reconciler(
        cluster,
        ca,
        Settings(rules=Rules(pod_certificates=True)),
        clock=lambda: clock.now,
        monotonic=lambda: clock.mono,
        signer_name="hello-mtls.dev/pod-certificate",
        federation=bundles,
    )


def test_every_secret_and_config_map_carries_the_federated_bundles(other: TrustDomain) -> None:
    cluster, ca, clock = Cluster(), CA(), Clock()
    endpoint = Endpoint(other.root_pem)
    bundles = FederatedBundles([SOURCE], fetcher=endpoint, monotonic=lambda: clock.mono)
    r = reconciler(cluster, ca, clock, bundles)
    r.tick()
    r.pod_event(pod("web-1", {ANNOTATION_NAME: "web.shop.svc"}), None)
    r.pod_event(
        pod("api-1", {ANNOTATION_NAME: "api.shop.svc", ANNOTATION_MODE: "pod-certificate"}), None
    )
    secret = decode_data(cluster.secrets[("shop", "web-tls")])
    config_map = cluster.config_maps[("shop", POLICY_CONFIG_MAP)]["data"]
    assert secret[OTHER_FILE] == other.root_pem and secret["ca.crt"] != other.root_pem
    assert config_map[OTHER_FILE] == other.root_pem.decode()
    endpoint.answer = Bundle(other.root_pem * 2, 30, 2)  # their root rotation
    clock.advance(30)
    r.tick()
    assert decode_data(cluster.secrets[("shop", "web-tls")])[OTHER_FILE] == other.root_pem * 2
    assert cluster.config_maps[("shop", POLICY_CONFIG_MAP)]["data"][OTHER_FILE].count("BEGIN") == 2
    assert ca.signed == 1  # the leaf stays


def test_our_own_trust_domain_is_never_written_as_federated(other: TrustDomain) -> None:
    cluster, ca, clock = Cluster(), CA(), Clock()
    ours = Source(ca.status().trust_domain, "https://x.example/", HTTPS_WEB)
    endpoint = Endpoint(other.root_pem)
    bundles = FederatedBundles([ours], fetcher=endpoint, monotonic=lambda: clock.mono)
    r = reconciler(cluster, ca, clock, bundles)
    r.tick()
    r.pod_event(pod("web-1", {ANNOTATION_NAME: "web.shop.svc"}), None)
    assert [k for k in decode_data(cluster.secrets[("shop", "web-tls")]) if "federated" in k] == []


@pytest.fixture()
def spiffe_endpoint(tmp_path: Path, other: TrustDomain) -> Iterator[tuple[str, str]]:
    """A bundle endpoint on 127.0.0.1 whose certificate is an X509-SVID of other.example that
    also names localhost."""
    endpoint_id = other.id("bundle-endpoint")
    files = other.files(endpoint_id, "localhost")
    (tmp_path / "chain.pem").write_bytes(files["tls.crt"] + files["tls.key"])
    body = json.dumps(
        {
            "keys": [
                {
                    "use": "x509-svid",
                    "kty": "EC",
                    "x5c": [base64.b64encode(other.ca.root.public_bytes(Encoding.DER)).decode()],
                }
            ],
            "spiffe_refresh_hint": 60,
        }
    ).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "chain.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/bundle", endpoint_id
    finally:
        server.shutdown()
        server.server_close()


def test_an_https_spiffe_endpoint_must_carry_its_spiffe_id(
    spiffe_endpoint: tuple[str, str], other: TrustDomain
) -> None:
    url, endpoint_id = spiffe_endpoint
    source = Source(OTHER, url, HTTPS_SPIFFE, endpoint_id, other.root_pem)
    bundle = fetch(source, other.root_pem)
    assert x509.load_pem_x509_certificates(bundle.roots_pem) == [other.ca.root]
    assert bundle.refresh_hint == 60
    impostor = Source(OTHER, url, HTTPS_SPIFFE, other.id("somebody-else"), other.root_pem)
    with pytest.raises(ValueError, match="not spiffe://other.example/somebody-else"):
        fetch(impostor, other.root_pem)
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch(source, TrustDomain("third.example").root_pem)
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_VERIFY_FAILED"):  # not a Web PKI one
        fetch(Source(OTHER, url, HTTPS_WEB), b"")


def test_an_https_web_endpoint_under_its_own_roots_follows_their_rotation(
    spiffe_endpoint: tuple[str, str], other: TrustDomain
) -> None:
    url = spiffe_endpoint[0].replace("127.0.0.1", "localhost")
    # Given the root the endpoint chained to at install; it has rotated since, and its
    # certificate chains to the root of the bundle fetched last (what `poll` passes).
    rotated_away = TrustDomain(OTHER).root_pem
    source = Source(OTHER, url, HTTPS_WEB, bootstrap_pem=rotated_away)
    bundle = fetch(source, other.root_pem)
    assert x509.load_pem_x509_certificates(bundle.roots_pem) == [other.ca.root]
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch(source, rotated_away)
