"""``GET /spiffe-bundle`` of the real ``hello-mtls-ca serve``: on the read-only port, the roots of
``GET /roots`` as a SPIFFE bundle (checked by `jsonschema` against a schema written from the spec
and by `cryptography` loading each ``x5c``), through a root rotation and a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from harness import ca_cli
from harness.ca_service import Service, credential_session
from harness.processes import free_port
from mtls_context import layout
from support.spiffe_bundles import roots_of


def _read(url: str, pki: Path) -> tuple[dict[str, Any], list[x509.Certificate]]:
    """The SPIFFE bundle, once its roots are exactly those of ``GET /roots``."""
    anyone = credential_session(pki, None)
    answer = anyone.get(f"{url}/spiffe-bundle", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    roots = x509.load_pem_x509_certificates(anyone.get(f"{url}/roots", timeout=10).content)
    assert roots_of(answer.json()) == roots
    return answer.json(), roots


def _step(pki: Path, url: str, phase: str) -> None:
    admin = credential_session(pki, "admin")
    answer = admin.post(f"{url}/rotate-root", json={"from": phase}, timeout=30)
    assert answer.status_code == 200, answer.text


def test_the_bundle_follows_a_root_rotation_and_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ca_cli.ca("init", "--state", str(state), "--key-type", "rsa-2048")
    admin = ["--role", "admin", "--name", "admin", "--out", str(tmp_path / "admin")]
    ca_cli.ca("provisioner", "--state", str(state), *admin)
    (tmp_path / "prov").symlink_to(tmp_path / "admin")
    sign_port = free_port()
    sign_url = f"https://127.0.0.1:{sign_port}"
    first = Service(state, tmp_path / "serve.log", f"--sign-bind=127.0.0.1:{sign_port}")
    try:
        start, (old,) = _read(first.url, tmp_path)
        assert [k["kty"] for k in start["keys"]] == ["RSA"]
        _step(tmp_path, sign_url, "idle")
        both, roots = _read(first.url, tmp_path)
        assert roots[0] == old and len(roots) == 2
        assert both["spiffe_sequence"] > start["spiffe_sequence"]
        # From here the CA may serve with a certificate of the new root: trust both.
        (tmp_path / "admin" / layout.CA).write_bytes(
            b"".join(r.public_bytes(Encoding.PEM) for r in roots)
        )
    finally:
        first.stop()
    second = Service(state, tmp_path / "serve.log", f"--sign-bind=127.0.0.1:{sign_port}")
    try:
        assert _read(second.url, tmp_path)[0] == both
        _step(tmp_path, sign_url, "both-trusted")
        assert _read(second.url, tmp_path)[0] == both  # the same roots: the same sequence
        _step(tmp_path, sign_url, "new-signing")
        done, (new,) = _read(second.url, tmp_path)
        assert new == roots[1]
        assert done["spiffe_sequence"] > both["spiffe_sequence"]
        assert done["spiffe_refresh_hint"] == start["spiffe_refresh_hint"] > 0
    finally:
        second.stop()
