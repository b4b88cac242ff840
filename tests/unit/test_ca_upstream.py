"""Chaining to an organisation's root: each check of an imported or given CA refuses in words,
renewal under the same root, a root rotation under another, names under name constraints."""

from __future__ import annotations

import datetime
import json
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mtls_ca import metrics, upstream
from mtls_ca.authority import CA, KeyType
from mtls_ca.revocation import CRL_LEAD
from mtls_ca.state import DirectoryStore, State
from mtls_ca.state_cache import StateCache
from mtls_ca.upkeep import Serving, Upkeep, is_current
from mtls_context import layout
from mtls_contract.phases import Phase

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)
SETTINGS = {"trust_domain": "cluster.local", "profile": "intermediate", "minimum": "5m",
            "maximum": "30d"}  # fmt: skip


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    name: str,
    public_key: object,
    signer: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None = None,
    *,
    ca: bool | None = True,
    path_length: int | None = None,
    key_cert_sign: bool = True,
    start: datetime.datetime = NOW - DAY,
    end: datetime.datetime = NOW + 90 * DAY,
    constraints: x509.NameConstraints | None = None,
) -> x509.Certificate:
    """What an organisation's CA tool might make (no SKI/AKI, unlike ours)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True
        )
    usage = dict.fromkeys(
        ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
         "key_agreement", "encipher_only", "decipher_only"),
        False,
    )  # fmt: skip
    builder = builder.add_extension(
        x509.KeyUsage(key_cert_sign=key_cert_sign, crl_sign=True, **usage), critical=True
    )
    if constraints is not None:
        builder = builder.add_extension(constraints, critical=True)
    return builder.sign(signer, hashes.SHA256())


class Org:
    """An organisation's offline root."""

    def __init__(self, name: str = "Example Root", **kwargs: object) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.root = _cert(name, self.key.public_key(), self.key, **kwargs)  # type: ignore[arg-type]

    def sign(self, csr_pem: bytes, **kwargs: object) -> x509.Certificate:
        csr = x509.load_pem_x509_csr(csr_pem)
        return _cert("signing", csr.public_key(), self.key, self.root.subject, **kwargs)  # type: ignore[arg-type]


def _under_an_org_intermediate(org: Org) -> tuple[x509.Certificate, CA]:
    """A CA of the organisation under its root, and a CA given it on a volume."""
    middle_key = ec.generate_private_key(ec.SECP256R1())
    middle = _cert("Issuing", middle_key.public_key(), org.key, org.root.subject)
    given = upstream.given(
        _pem(middle) + _pem(org.root), _key_pem(middle_key), trust_domain="cluster.local"
    )
    return middle, given


def _import(tmp_path: Path, org: Org, **kwargs: object) -> CA:
    csr = upstream.write_csr(tmp_path, KeyType.ECDSA_P256, SETTINGS)
    key, _ = upstream.pending(tmp_path)
    signed = org.sign(csr, **kwargs)
    return upstream.imported(_pem(signed), _pem(org.root), key, trust_domain="cluster.local")


def test_an_imported_signing_ca_signs_leaves_that_chain_to_the_org_root(tmp_path: Path) -> None:
    org = Org()
    ca = _import(tmp_path, org)
    issued = ca.issue("web.shop.svc", valid_for=DAY)
    chain = x509.load_pem_x509_certificates(issued.chain_pem)
    assert chain[1] == ca.intermediate and ca.root == org.root and ca.root_key is None
    chain[1].verify_directly_issued_by(org.root)
    assert (tmp_path / upstream.PENDING).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ca": False}, "is not a CA certificate (basicConstraints CA:FALSE)"),
        ({"ca": None}, "is not a CA certificate (no basicConstraints)"),
        ({"key_cert_sign": False}, "may not sign certificates (keyUsage lacks keyCertSign)"),
        ({"start": NOW + DAY}, "'CN=signing' is not valid before"),
        ({"start": NOW - 3 * DAY, "end": NOW - DAY}, "'CN=signing' expired at"),
    ],
)
def test_import_refuses_a_signing_ca_that_cannot_sign(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _import(tmp_path, Org(), **kwargs)


def test_import_refuses_another_key(tmp_path: Path) -> None:
    org = Org()
    first = upstream.write_csr(tmp_path, KeyType.ECDSA_P256, SETTINGS)
    upstream.write_csr(tmp_path, KeyType.ECDSA_P256, SETTINGS)  # init run again: a new key
    key, _ = upstream.pending(tmp_path)
    with pytest.raises(ValueError, match="not for the key of the CSR this CA wrote"):
        upstream.imported(_pem(org.sign(first)), _pem(org.root), key, trust_domain="cluster.local")


def test_import_refuses_a_chain_without_the_root(tmp_path: Path) -> None:
    org = Org()
    csr = upstream.write_csr(tmp_path, KeyType.ECDSA_P256, SETTINGS)
    key, _ = upstream.pending(tmp_path)
    with pytest.raises(ValueError, match="give the organisation's chain up to and including"):
        upstream.imported(_pem(org.sign(csr)), b"", key, trust_domain="cluster.local")


def test_import_refuses_a_root_whose_path_length_leaves_no_room(tmp_path: Path) -> None:
    org = Org(path_length=0)
    root_key = org.key
    middle_key = ec.generate_private_key(ec.SECP256R1())
    middle = _cert("Issuing", middle_key.public_key(), root_key, org.root.subject)
    csr = upstream.write_csr(tmp_path, KeyType.ECDSA_P256, SETTINGS)
    key, _ = upstream.pending(tmp_path)
    signing = _cert("signing", x509.load_pem_x509_csr(csr).public_key(), middle_key, middle.subject)
    with pytest.raises(
        ValueError, match=r"'CN=Example Root' allows 0 CA certificate\(s\) below it \(pathlen\)"
    ):
        upstream.imported(
            _pem(signing), _pem(middle) + _pem(org.root), key, trust_domain="cluster.local"
        )


def test_no_import_without_a_csr(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no CSR is waiting for its certificate"):
        upstream.pending(tmp_path)


def test_a_given_certificate_needs_room_for_the_intermediate() -> None:
    org = Org(path_length=0)
    with pytest.raises(ValueError, match=r"allows 0 CA certificate\(s\) below it"):
        upstream.given(_pem(org.root), _key_pem(org.key), trust_domain="cluster.local")


def test_a_given_key_must_be_the_certificates() -> None:
    org = Org()
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError, match="the key given is not the key of the organisation's"):
        upstream.given(_pem(org.root), _key_pem(other), trust_domain="cluster.local")


def test_a_given_intermediate_of_the_org_ends_in_every_leaf_chain() -> None:
    org = Org()
    middle, ca = _under_an_org_intermediate(org)
    assert ca.chain == (middle,) and ca.issuer == middle and ca.root == org.root
    renewed = ca.renew_intermediate()
    chain = x509.load_pem_x509_certificates(renewed.issue("a.b.svc", valid_for=DAY).chain_pem)
    assert chain[1:] == [renewed.intermediate, middle]
    renewed.intermediate.verify_directly_issued_by(middle)


def test_name_constraints_refuse_the_trust_domain_and_names_outside(tmp_path: Path) -> None:
    permitted = x509.NameConstraints(
        permitted_subtrees=[
            x509.DNSName("svc.cluster.local"),
            x509.UniformResourceIdentifier("cluster.local"),
        ],
        excluded_subtrees=[x509.DNSName("secret.svc.cluster.local")],
    )
    org = Org(constraints=permitted)
    ca = _import(tmp_path, org)
    ca.issue("web.shop.svc.cluster.local", uris=["spiffe://cluster.local/ns/shop/sa/web"],
             valid_for=DAY)  # fmt: skip
    with pytest.raises(ValueError, match="name 'web.shop.svc' is outside the organisation's"):
        ca.issue("web.shop.svc", valid_for=DAY)
    with pytest.raises(ValueError, match="'x.secret.svc.cluster.local' is excluded"):
        ca.issue("x.secret.svc.cluster.local", valid_for=DAY)
    csr = upstream.write_csr(tmp_path, KeyType.ECDSA_P256, SETTINGS)
    key, _ = upstream.pending(tmp_path)
    with pytest.raises(ValueError, match="SPIFFE IDs of trust domain example.org break"):
        upstream.imported(_pem(org.sign(csr)), _pem(org.root), key, trust_domain="example.org")


def _offline_state(tmp_path: Path, org: Org) -> State:
    return State(generations=(_import(tmp_path, org),), upstream="offline")


def test_a_signing_ca_under_the_same_root_is_held_as_the_successor(tmp_path: Path) -> None:
    org = Org()
    state = _offline_state(tmp_path, org)
    renewed = upstream.adopt(state, _import(tmp_path, org), mode="offline")
    assert renewed.upcoming is not None and renewed.phase == Phase.IDLE
    assert renewed.bundle_pem == state.bundle_pem
    assert renewed.bundle_sequence == state.bundle_sequence


def test_a_signing_ca_under_another_root_starts_a_rotation(tmp_path: Path) -> None:
    state = _offline_state(tmp_path, Org())
    other = Org("Example Root 2")
    moved = upstream.adopt(state, _import(tmp_path, other), mode="offline")
    assert moved.phase == Phase.BOTH_TRUSTED
    assert [ca.root for ca in moved.generations] == [state.signer.root, other.root]
    assert moved.bundle_sequence == state.bundle_sequence + 1
    with pytest.raises(ValueError, match="a root rotation is under way"):
        upstream.adopt(moved, _import(tmp_path, Org("Third")), mode="offline")
    done = moved.rotated(expected=Phase.BOTH_TRUSTED).rotated(expected=Phase.NEW_SIGNING)
    assert [ca.root for ca in done.generations] == [other.root]


def test_an_own_root_moves_to_the_organisations_by_a_rotation(tmp_path: Path) -> None:
    state = State(generations=(CA.create(),))
    moved = upstream.adopt(state, _import(tmp_path, Org()), mode="offline")
    assert moved.upstream == "offline" and moved.phase == Phase.BOTH_TRUSTED
    assert moved.holds_root_keys and not moved.signing_material().holds_root_keys


def test_the_same_certificate_on_the_volume_is_not_new_during_its_rotation() -> None:
    org = Org()
    state = State(generations=(CA.create(),))
    given = upstream.given(_pem(org.root), _key_pem(org.key), trust_domain="cluster.local")
    assert upstream.is_new(state, given)
    moved = upstream.adopt(state, given, mode="volume")
    again = upstream.given(_pem(org.root), _key_pem(org.key), trust_domain="cluster.local")
    assert not upstream.is_new(moved, again)  # a restart mid-rotation takes nothing new


def test_rotate_root_does_not_make_a_root_in_place_of_the_organisations(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="the root is the organisation's"):
        _offline_state(tmp_path, Org()).rotated(expected=Phase.IDLE)


def test_the_state_keeps_the_chain_and_the_mode(tmp_path: Path) -> None:
    org = Org()
    middle, ca = _under_an_org_intermediate(org)
    state = State(generations=(ca,), upstream="volume")
    loaded = State.from_json(state.to_json())
    assert loaded.signer.chain == (middle,) and loaded.upstream == "volume"
    assert loaded.holds_root_keys
    material = State.from_json(state.signing_material().to_json())
    assert material.material_only and not material.holds_root_keys
    assert material.signer.chain == (middle,) and material.signer.root_key is None
    roles = [c["role"] for c in loaded.status()["chain"]]
    assert roles == ["signing", "organisation", "root"]


def test_an_offline_state_is_the_root_holders_without_a_root_key(tmp_path: Path) -> None:
    state = _offline_state(tmp_path, Org())
    assert state.holds_root_keys
    assert not State.from_json(state.signing_material().to_json()).holds_root_keys


def test_the_ca_says_when_an_imported_signing_ca_needs_renewing(tmp_path: Path) -> None:
    org = Org()
    state = _offline_state(tmp_path, org)
    late = state.signer.intermediate.not_valid_after_utc - DAY
    assert state.warnings(NOW) == []
    (warning,) = state.warnings(late)
    assert "past 2/3 of its life" in warning and "init --upstream-csr" in warning
    assert state.status(late)["warnings"] == [warning]
    renewed = upstream.adopt(state, _import(tmp_path, org), mode="offline")
    assert renewed.warnings(late) == []
    assert renewed.signing_material().warnings(late) == []  # a signer does not cry wolf
    assert b"hello_mtls_ca_upstream_renewal_due 0.0" in metrics.render(state)


def _serving(tmp_path: Path, store: DirectoryStore) -> Upkeep:
    serving = Serving(tmp_path / "serving", ("localhost",), datetime.timedelta(hours=3))
    return Upkeep(StateCache(store), serving)


def test_upkeep_hands_over_to_the_imported_successor_without_a_gap(tmp_path: Path) -> None:
    org = Org()
    store = DirectoryStore(tmp_path / "state")
    state = store.create(_offline_state(tmp_path, org))
    old = state.signer.intermediate
    upkeep = _serving(tmp_path, store)
    due = old.not_valid_before_utc + (old.not_valid_after_utc - old.not_valid_before_utc) * 0.7
    upkeep.run(due)  # past 2/3, nothing imported: the CA cannot make one, it keeps signing
    assert store.load().signer.intermediate == old
    successor = _import(tmp_path, org)  # signed by the organisation a day before its import
    store.update(lambda s: upstream.adopt(s, successor, mode="offline", now=due))
    new = store.load().upcoming
    assert new is not None
    upkeep.run(due + CRL_LEAD / 2)
    assert store.load().signer.intermediate == old  # a day for the new CRL to spread first
    upkeep.run(due + CRL_LEAD)
    after = store.load()
    assert after.signer.intermediate == new.intermediate and after.upcoming is None
    assert old in [ca.intermediate for ca in after.retired]


def test_served_certificates_carry_the_org_chain(tmp_path: Path) -> None:
    org = Org()
    middle, ca = _under_an_org_intermediate(org)
    store = DirectoryStore(tmp_path / "state")
    state = store.create(State(generations=(ca,), upstream="volume"))
    _serving(tmp_path, store).run()
    files = layout.read_version(tmp_path / "serving")
    assert files[layout.CA] == _pem(org.root)
    assert is_current(files, state, NOW)
    assert x509.load_pem_x509_certificates(files[layout.CERT])[2] == middle


def test_the_pending_csr_keeps_its_settings(tmp_path: Path) -> None:
    upstream.write_csr(tmp_path, KeyType.ECDSA_P256, {**SETTINGS, "trust_domain": "x.example"})
    _, settings = upstream.pending(tmp_path)
    assert settings["trust_domain"] == "x.example"
    assert json.loads((tmp_path / upstream.PENDING).read_text())["key"].startswith("-----BEGIN")
    upstream.drop_pending(tmp_path)
    assert not (tmp_path / upstream.PENDING).exists()


def test_a_state_of_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="upstream mode 'cloud' is unknown"):
        replace(State(generations=(CA.create(),)), upstream="cloud")
