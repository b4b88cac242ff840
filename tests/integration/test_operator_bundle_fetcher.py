"""The operator's bundle fetcher against a real ``hello-mtls-ca serve`` of another trust domain:
its ``GET /spiffe-bundle`` read into roots, a root rotation picked up on the refresh hint, and
the last good roots kept while the CA is down."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

from harness import ca_cli
from harness.ca_service import Service
from harness.waiting import wait_until
from mtls_ca.state import DirectoryStore
from mtls_context.layout import federated_bundle
from mtls_operator.bundle_fetcher import FederatedBundles
from mtls_operator.federation import HTTPS_WEB, Source
from support.operator_fakes import Clock

OTHER = "other.example"


def failures() -> float:
    sample = REGISTRY.get_sample_value(
        "hello_mtls_operator_federated_bundle_fetch_failed_total", {"trust_domain": OTHER}
    )
    return sample or 0.0


def test_a_real_ca_bundle_is_fetched_followed_and_kept(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ca_cli.init(state, f"--trust-domain={OTHER}")
    roots = DirectoryStore(state).load().bundle_pem
    service = Service(state, tmp_path / "serve.log")
    clock = Clock()
    # https_web with the roots its serving certificate chains to (not a Web PKI certificate).
    source = Source(OTHER, f"{service.url}/spiffe-bundle", HTTPS_WEB, bootstrap_pem=roots)
    bundles = FederatedBundles([source], monotonic=lambda: clock.mono)
    file = federated_bundle(OTHER)
    try:
        assert bundles.poll()
        assert bundles.files() == {file: roots}
        ca_cli.rotate_root(state, "idle")  # their root rotation begins: both roots trusted
        both = DirectoryStore(state).load().bundle_pem
        assert both != roots

        def rotated() -> bool:
            clock.advance(30)  # the CA's refresh hint
            bundles.poll()
            return bundles.files()[file] == both

        wait_until("the new root to be fetched", rotated, 30, 0.2)
    finally:
        service.stop()
    failed = failures()
    clock.advance(30)
    assert not bundles.poll()
    assert failures() == failed + 1
    assert bundles.files() == {file: both}  # the last good bundle stays
