"""``hello-mtls-ca inspect``'s judgement: the fields shown, each fault said in words, the policy
check, and the key-exchange group read from a ServerHello."""

from __future__ import annotations

import datetime
import struct
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mtls_ca import inspector, revocation
from mtls_ca.authority import CA, KeyType
from mtls_ca.state import State
from mtls_context import layout

HOUR = datetime.timedelta(hours=1)
SPIFFE = "spiffe://cluster.local/ns/demo/sa/web"


def _now() -> datetime.datetime:
    """The time now: the CA's fixtures issue with the real clock, so a time taken when the
    module was imported can fall before a certificate issued minutes later (a slow machine)."""
    return datetime.datetime.now(datetime.UTC)


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create()


@pytest.fixture(scope="module")
def other_ca() -> CA:
    return CA.create()


def _impostor(root: x509.Certificate) -> x509.Certificate:
    """A self-signed root with ``root``'s name and another key."""
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateBuilder()
        .subject_name(root.subject)
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - HOUR)
        .not_valid_after(_now() + HOUR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def _chain(ca: CA, *names: str, uris: tuple[str, ...] = (SPIFFE,)) -> list[x509.Certificate]:
    issued = ca.issue(*names, uris=uris, valid_for=HOUR)
    return x509.load_pem_x509_certificates(issued.chain_pem)


def _judge(
    certificates: list[x509.Certificate], roots: list[x509.Certificate] | None, **kw: object
) -> inspector.Report:
    return inspector.inspect(
        "target",
        inspector.Chain(certificates),
        roots=roots,
        bundle=Path("ca.crt") if roots is not None else None,
        now=kw.pop("now", None) or _now(),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def test_a_good_chain_verifies_and_shows_its_fields(ca: CA) -> None:
    report = _judge(_chain(ca, "web.demo.svc", "10.0.0.7"), [ca.root], name="web.demo.svc")
    assert report.verified is True and report.problems == []
    leaf, intermediate = report.certificates
    assert leaf["dns_names"] == ["web.demo.svc"] and leaf["ip_addresses"] == ["10.0.0.7"]
    assert leaf["spiffe_id"] == SPIFFE and leaf["key"] == "EC P-256" and not leaf["ca"]
    assert leaf["extended_key_usage"] == ["serverAuth", "clientAuth"]
    assert "digital_signature" in leaf["key_usage"]
    assert leaf["time_left"].startswith(("59m", "1h"))
    assert intermediate["ca"] and "key_cert_sign" in intermediate["key_usage"]
    assert leaf["issuer"] == intermediate["subject"]


def test_the_key_kind_is_named() -> None:
    rsa_ca = CA.create(key_type=KeyType.RSA_2048)
    assert inspector.describe(rsa_ca.root, _now())["key"] == "RSA 2048"


def test_without_a_bundle_nothing_is_verified(ca: CA) -> None:
    report = _judge(_chain(ca, "web.demo.svc"), None)
    assert report.verified is None and report.problems == []
    assert "not checked (no trust bundle: give --ca)" in inspector.render(report)


def test_an_expired_certificate_is_said_so(ca: CA) -> None:
    later = _now() + 2 * HOUR
    report = _judge(_chain(ca, "web.demo.svc"), [ca.root], now=later)
    assert report.verified is False
    assert report.problems[0].startswith("'CN=web.demo.svc' expired on ")
    assert "did not renew or did not reload" in report.problems[0]


def test_a_certificate_not_yet_valid_points_at_the_clocks(ca: CA) -> None:
    report = _judge(_chain(ca, "web.demo.svc"), [ca.root], now=_now() - HOUR)
    assert report.problems[0].startswith("'CN=web.demo.svc' is not valid until ")
    assert report.problems[0].endswith("check this machine's clock and the CA's")


def test_a_root_of_the_same_name_with_another_key_is_said_so(ca: CA) -> None:
    report = _judge(_chain(ca, "web.demo.svc"), [_impostor(ca.root)])
    assert report.verified is False
    [problem] = report.problems
    assert problem.startswith(f"'{ca.intermediate.subject.rfc4514_string()}' names '")
    assert "signature does not verify with that certificate's key" in problem


def test_another_cas_bundle_is_an_unknown_authority(ca: CA, other_ca: CA) -> None:
    report = _judge(_chain(ca, "web.demo.svc"), [other_ca.root])
    assert report.verified is False
    [problem] = report.problems
    intermediate = ca.intermediate.subject.rfc4514_string()
    assert problem.startswith(
        f"certificate signed by unknown authority: no certificate in the trust bundle ca.crt"
        f" issued '{intermediate}' (issuer '{ca.root.subject.rfc4514_string()}')"
    )


def test_a_leaf_alone_is_an_incomplete_chain(ca: CA) -> None:
    leaf = _chain(ca, "web.demo.svc")[0]
    [problem] = _judge([leaf], [ca.root]).problems
    assert problem.startswith("incomplete chain: 'CN=web.demo.svc' was issued by ")
    assert f"({layout.CERT} holds both)" in problem


def test_a_name_the_certificate_does_not_carry(ca: CA) -> None:
    report = _judge(_chain(ca, "web.demo.svc"), [ca.root], name="api.demo.svc")
    assert report.problems == [
        "the certificate is not valid for 'api.demo.svc': it names web.demo.svc"
    ]


def test_a_client_only_certificate_verifies_as_a_client_certificate(ca: CA) -> None:
    issued = ca.issue("op.hello-mtls", valid_for=HOUR, client_only=True)
    report = _judge(x509.load_pem_x509_certificates(issued.chain_pem), [ca.root])
    assert report.verified is True
    assert report.certificates[0]["extended_key_usage"] == ["clientAuth"]


def test_rfc_5280_path_validation_has_the_last_word(ca: CA) -> None:
    """A CA certificate presented as a leaf: every check of ours passes (valid, issued by the
    root), the path validation refuses it."""
    report = _judge([ca.intermediate], [ca.root])
    assert report.verified is False
    [problem] = report.problems
    assert problem.startswith("RFC 5280 path validation failed: ")


@pytest.mark.parametrize(
    ("names", "namespace", "verdict"),
    [
        (("web.demo.svc",), "demo", "passes for namespace 'demo' (cluster domain cluster.local)"),
        (
            ("web.shop.svc",),
            "demo",
            "FAILS for namespace 'demo': name 'web.shop.svc' is not under namespace 'demo'",
        ),
    ],
)
def test_the_names_are_checked_against_a_namespaces_policy(
    ca: CA, names: tuple[str, ...], namespace: str, verdict: str
) -> None:
    report = _judge(_chain(ca, *names, uris=()), [ca.root], namespace=namespace)
    assert report.policy == verdict


def test_a_spiffe_id_of_another_namespace_fails_the_policy(ca: CA) -> None:
    report = _judge(_chain(ca, "web.shop.svc", uris=(SPIFFE,)), [ca.root], namespace="shop")
    assert report.policy == f"FAILS for namespace 'shop': SPIFFE ID {SPIFFE} is another namespace's"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("127.0.0.1:8443", ("127.0.0.1", 8443)),
        ("[::1]:443", ("::1", 443)),
        ("web.demo.svc:443", ("web.demo.svc", 443)),
        ("certs/tls.crt", None),
        ("certs", None),
    ],
)
def test_targets(text: str, parsed: tuple[str, int] | None) -> None:
    assert inspector.parse_target(text) == parsed


def test_a_port_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="port 70000 is not between 1 and 65535"):
        inspector.parse_target("host:70000")


def test_a_directory_without_a_certificate_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"not a certificate directory: it has no {layout.CERT}"):
        inspector.load(tmp_path)


def test_a_file_without_a_certificate_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ValueError, match="holds no PEM or DER certificate"):
        inspector.load(junk)


def _server_hello(extensions: bytes) -> bytes:
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x13\x01" + b"\x00"
    body += struct.pack("!H", len(extensions)) + extensions
    return b"\x02" + len(body).to_bytes(3, "big") + body


def test_the_group_is_read_from_a_server_hellos_key_share() -> None:
    versions = struct.pack("!HHH", 43, 2, 0x0304)
    key_share = struct.pack("!HHH", 51, 4 + 32, 0x001D) + struct.pack("!H", 32) + bytes(32)
    assert inspector._key_share_group(_server_hello(versions + key_share)) == "x25519"
    unknown = struct.pack("!HHH", 51, 2, 0x7777)
    assert inspector._key_share_group(_server_hello(unknown)) == "0x7777"
    assert inspector._key_share_group(_server_hello(versions)) is None
    assert inspector._key_share_group(b"\x02\x00") is None


def test_revocation_status_against_the_crl(ca: CA, other_ca: CA, tmp_path: Path) -> None:
    # Issue 23: the inspector says whether the CA's CRL lists the leaf.
    revoked, kept = _chain(ca, "web.demo"), _chain(ca, "api.demo")
    state = revocation.revoke(
        State(generations=(ca,)),
        [revocation.record_for(revoked[0], ca.intermediate)],
        "keyCompromise",
    )
    report = _judge(revoked, [ca.root], crl=state.crl_pem)
    assert report.verified is False and report.revocation is not None
    assert report.revocation.startswith("REVOKED on ") and "keyCompromise" in report.revocation
    assert report.revocation in report.problems and "✗ REVOKED" in inspector.render(report)
    fine = _judge(kept, [ca.root], crl=state.crl_pem)
    assert fine.verified is True and (fine.revocation or "").startswith("not revoked (CRL number 1")
    stale = _judge(kept, [ca.root], crl=state.crl_pem, now=_now() + datetime.timedelta(days=8))
    assert "the CRL is stale" in (stale.revocation or "")
    foreign = revocation.with_crl(State(generations=(other_ca,))).crl_pem
    assert "holds no CRL of" in (_judge(kept, [ca.root], crl=foreign).revocation or "")
    assert "does not parse" in (
        _judge(kept, None, crl=b"junk-----END X509 CRL-----").revocation or ""
    )
    # A certificate directory brings its own ca.crl.
    layout.write_version(
        tmp_path,
        {
            layout.CERT: b"".join(c.public_bytes(serialization.Encoding.PEM) for c in revoked),
            layout.CA: ca.root_pem,
            layout.CRL: state.crl_pem,
        },
    )
    assert inspector.load(tmp_path).crl == tmp_path / layout.CRL
