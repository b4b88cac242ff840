"""The real root holder and real signer processes on 127.0.0.1: signers fetch the signing
material after proving what they are, sign with it, report what they signed into the root
holder's index (so that it is revoked by identity or namespace, and its key refused on every
signer), follow a root rotation, and sign on while the root holder is away, delivering the
reports when it is back.

The API server's TokenReview is the stand-in of `harness.token_review_api` (reached through
``KUBECONFIG`` by the root holder's real client); the real one is proven on the cluster.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness.ca_service import Service, credential_session
from harness.processes import free_port
from harness.token_review_api import Token, TokenReviewAPI
from harness.waiting import accepts, wait_until
from mtls_ca.revocation import IssuedIndex, load_crls
from mtls_context import layout
from mtls_operator.ca_client import CAClient
from mtls_operator.ports import CARefused
from support.csrs import csr_pem

AUDIENCE = "hello-mtls-ca-signer"
SIGNERS = "system:serviceaccount:hello-mtls:hello-mtls-ca-signer"
TOKENS = {
    "signer-token": Token(AUDIENCE, SIGNERS, pod_name="hello-mtls-ca-signer-1"),
    "operator-token": Token(AUDIENCE, "system:serviceaccount:hello-mtls:hello-mtls-operator"),
    "api-server-token": Token("https://kubernetes.default.svc", SIGNERS),
}
FETCH_INTERVAL = "1"


@pytest.fixture(scope="module")
def pki(pki: Path) -> Path:
    """The conftest's, with a file for each token the TokenReview stand-in knows."""
    for token in TOKENS:
        (pki / token).write_text(token + "\n")
    return pki


@pytest.fixture(scope="module")
def api(pki: Path) -> Iterator[TokenReviewAPI]:
    server = TokenReviewAPI(TOKENS)
    yield server
    server.stop()


class RootHolder:
    """The root holder's `Service` with its material port; `restart` keeps the ports."""

    def __init__(self, pki: Path, api: TokenReviewAPI) -> None:
        self.pki = pki
        self.material_port = free_port()
        self.env = {"KUBECONFIG": str(api.kubeconfig(pki / "kubeconfig"))}
        self.env["KUBERNETES_SERVICE_HOST"] = ""  # never the in-cluster configuration
        self.service = self._start()

    def _start(self, bind: str | None = None) -> Service:
        args = [
            f"--material-bind=127.0.0.1:{self.material_port}",
            "--signer-service-account=hello-mtls/hello-mtls-ca-signer",
            f"--signer-audience={AUDIENCE}",
        ]
        return Service(self.pki / "state", self.pki / "root-holder.log", *args, env=self.env)

    @property
    def material_url(self) -> str:
        return f"https://127.0.0.1:{self.material_port}"

    def kill(self) -> None:
        os.killpg(self.service.process.pid, signal.SIGKILL)
        self.service.process.wait(timeout=15)

    def restart(self) -> None:
        self.service = self._start()


@pytest.fixture(scope="module")
def root_holder(pki: Path, api: TokenReviewAPI) -> Iterator[RootHolder]:
    holder = RootHolder(pki, api)
    yield holder
    holder.service.stop()


def start_signer(
    pki: Path,
    holder: RootHolder,
    name: str,
    token: str = "signer-token",
    fetch_interval: str = FETCH_INTERVAL,
    *args: str,
) -> Service:
    return Service(
        None,
        pki / f"{name}.log",
        f"--root-holder={holder.material_url}",
        f"--root-ca={pki / 'prov' / layout.CA}",
        f"--token-file={pki / token}",
        f"--fetch-interval={fetch_interval}",
        *args,
    )


@pytest.fixture(scope="module")
def signers(pki: Path, root_holder: RootHolder) -> Iterator[list[Service]]:
    started = [start_signer(pki, root_holder, f"signer-{i}") for i in range(2)]
    yield started
    for signer in started:
        signer.stop()


@pytest.fixture(scope="module")
def operator(pki: Path) -> requests.Session:
    return credential_session(pki, "prov")


def fetch_material(holder: RootHolder, pki: Path, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return credential_session(pki, None).post(
        f"{holder.material_url}/signing-material", headers=headers, timeout=10
    )


def sign(session: requests.Session, url: str) -> requests.Response:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web.demo")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    body = {"csr": csr, "names": ["web.demo"], "namespace": "demo", "duration": "1h"}
    return session.post(f"{url}/sign", json=body, timeout=10)


def status(session: requests.Session, service: Service) -> dict[str, object]:
    answer: dict[str, object] = session.get(f"{service.url}/status", timeout=10).json()
    return answer


def metric(session: requests.Session, service: Service, name: str) -> float:
    text = session.get(f"{service.url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in the metrics of {service.url}")


def material_age(session: requests.Session, service: Service) -> float:
    return metric(session, service, "hello_mtls_ca_signer_material_age_seconds")


def indexed(pki: Path, serials: set[str]) -> bool:
    """Whether the root holder's index holds every one of ``serials``."""
    return serials <= {f"{r.serial:x}" for r in IssuedIndex(pki / "state").records()}


def lists(session: requests.Session, service: Service, serials: set[str]) -> bool:
    """Whether ``service`` serves CRLs that list every one of ``serials``."""
    crls = load_crls(session.get(f"{service.url}/crl", timeout=10).content)
    return all(
        any(c.get_revoked_certificate_by_serial_number(int(s, 16)) for c in crls) for s in serials
    )


def serves(session: requests.Session, signer: Service, material_sha256: str) -> bool:
    return status(session, signer)["material_sha256"] == material_sha256


def fetched_lately(session: requests.Session, signer: Service) -> bool:
    """Whether ``signer`` fetched its material within the last three fetch intervals."""
    return material_age(session, signer) < 3 * float(FETCH_INTERVAL)


def fetched_long_ago(session: requests.Session, signer: Service) -> bool:
    return not fetched_lately(session, signer)


def test_a_signer_gets_the_signing_intermediate_and_no_root_key(
    pki: Path, root_holder: RootHolder
) -> None:
    answer = fetch_material(root_holder, pki, "signer-token")
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    document = json.loads(answer.content)
    generations = document["generations"]
    assert [g["root_key"] for g in generations] == [None]
    assert generations[0]["intermediate_key"].startswith("-----BEGIN PRIVATE KEY-----")
    stored = json.loads((pki / "state" / "state.json").read_text())
    assert generations[0]["intermediate"] == stored["generations"][0]["intermediate"]


@pytest.mark.parametrize(
    ("token", "status_code", "error"),
    [
        (None, 401, "a signer's bearer token is required"),
        (
            "no-such-token",
            403,
            "the API server did not authenticate the token: invalid bearer token",
        ),
        (
            "api-server-token",
            403,
            "the API server did not authenticate the token: token audiences is invalid",
        ),
        (
            "operator-token",
            403,
            "'system:serviceaccount:hello-mtls:hello-mtls-operator' is not the signers' "
            "ServiceAccount",
        ),
    ],
)
def test_the_root_holder_hands_the_material_to_signers_only(
    pki: Path, root_holder: RootHolder, token: str | None, status_code: int, error: str
) -> None:
    answer = fetch_material(root_holder, pki, token)
    assert (answer.status_code, answer.json()) == (status_code, {"error": error})


def test_the_material_port_serves_nothing_else_and_nothing_else_serves_it(
    pki: Path, root_holder: RootHolder, operator: requests.Session
) -> None:
    elsewhere = operator.post(
        f"{root_holder.service.url}/signing-material",
        headers={"Authorization": "Bearer signer-token"},
        timeout=10,
    )
    assert elsewhere.status_code == 404
    port = root_holder.material_port
    assert elsewhere.json() == {"error": f"POST /signing-material is served on port {port} only"}
    assert sign(operator, root_holder.material_url).status_code == 404
    roots = operator.get(f"{root_holder.material_url}/roots", timeout=10)
    assert roots.json() == {
        "error": f"port {port} serves POST /signing-material and POST /issued only"
    }


@pytest.mark.parametrize(
    ("credential", "token", "status_code", "error"),
    [
        ("alice", None, 403, "'spiffe://cluster.local/hello-mtls/admin/alice' is not a CA signer"),
        ("prov", None, 403, "'spiffe://cluster.local/hello-mtls/provisioner/operator' is not a "),
        ("prov", "operator-token", 403, "'system:serviceaccount:hello-mtls:hello-mtls-operator'"),
        (None, None, 401, "a signer's bearer token is required"),
    ],
)
def test_only_signers_write_into_the_root_holders_index(
    pki: Path,
    root_holder: RootHolder,
    credential: str | None,
    token: str | None,
    status_code: int,
    error: str,
) -> None:
    record = {
        "serial": "1f",
        "names": ["web.demo"],
        "spiffe_id": "spiffe://cluster.local/ns/demo/sa/impostor",
        "key_sha256": "ab" * 32,
        "issuer": "cd" * 32,
        "not_after": "2030-01-01T00:00:00Z",
    }
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    answer = credential_session(pki, credential).post(
        f"{root_holder.material_url}/issued", json={"issued": [record]}, headers=headers, timeout=10
    )
    assert answer.status_code == status_code and answer.json()["error"].startswith(error)
    assert not indexed(pki, {"1f"})


def test_two_signers_sign_with_the_shared_intermediate(
    pki: Path, root_holder: RootHolder, signers: list[Service], operator: requests.Session
) -> None:
    holder_status = status(operator, root_holder.service)
    intermediate = json.loads((pki / "state" / "state.json").read_text())["generations"][0][
        "intermediate"
    ]
    for signer in signers:
        answer = sign(operator, signer.url)
        assert answer.status_code == 200, answer.text
        chain = answer.json()["certificate"]
        assert chain.endswith(intermediate)
        assert status(operator, signer)["material_sha256"] == holder_status["material_sha256"]
        refused = operator.post(f"{signer.url}/rotate-root", json={"from": "idle"}, timeout=10)
        assert (refused.status_code, refused.json()) == (
            404,
            {"error": "POST /rotate-root is served by the root holder, not a signer"},
        )
        material = credential_session(pki, None).post(
            f"{signer.url}/signing-material",
            headers={"Authorization": "Bearer signer-token"},
            timeout=10,
        )
        assert material.status_code == 404


def test_what_signers_signed_is_revoked_by_identity_and_namespace_and_refused_everywhere(
    pki: Path, root_holder: RootHolder, signers: list[Service], operator: requests.Session
) -> None:
    web_key, db_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    signed = []
    for signer, key, account in ((signers[0], web_key, "web"), (signers[1], db_key, "db")):
        body = {
            "csr": csr_pem(key),
            "names": [f"{account}.shop.svc"],
            "namespace": "shop",
            "service_account": account,
        }
        answer = operator.post(f"{signer.url}/sign", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        signed.append(answer.json()["serial"])
    web, db = signed
    wait_until(
        "the signers' reports in the root holder's index", lambda: indexed(pki, {web, db}), 30, 0.2
    )

    admin = credential_session(pki, "alice")
    by_identity = admin.post(
        f"{root_holder.service.url}/revoke",
        json={"identity": "spiffe://cluster.local/ns/shop/sa/web", "reason": "keyCompromise"},
        timeout=10,
    )
    assert by_identity.status_code == 200, by_identity.text
    assert [r["serial"] for r in by_identity.json()["revoked"]] == [web]
    by_namespace = admin.post(
        f"{root_holder.service.url}/revoke", json={"namespace": "shop"}, timeout=10
    )
    assert by_namespace.status_code == 200, by_namespace.text
    assert {r["serial"] for r in by_namespace.json()["revoked"]} == {web, db}

    reader = credential_session(pki, None)
    for signer in signers:
        wait_until(
            f"{signer.url} to serve the CRL with both",
            functools.partial(lists, reader, signer, {web, db}),
            30,
            0.2,
        )
        for key, account in ((web_key, "web"), (db_key, "db")):
            body = {"csr": csr_pem(key), "names": [f"{account}.shop.svc"], "namespace": "shop"}
            again = operator.post(f"{signer.url}/sign", json=body, timeout=10)
            assert again.status_code == 403 and "was revoked" in again.json()["error"]


def _waits(signer: Service, why: str) -> None:
    """``signer`` waits for its first material, serving nothing, and its log says ``why``."""
    try:
        wait_until(
            f"the signer to say it waits: {why}",
            lambda: (
                f"waiting for the signing material, not serving yet: {why}"
                in signer.log.read_text()
            ),
            30,
            0.2,
        )
        assert signer.process.poll() is None, signer.log.read_text()[-2000:]
        assert not accepts(signer.port)
    finally:
        signer.stop()


def test_a_signer_without_material_waits_for_it_and_says_why(pki: Path, tmp_path: Path) -> None:
    holder = f"https://127.0.0.1:{free_port()}"
    signer = Service(
        None,
        tmp_path / "signer.log",
        f"--root-holder={holder}",
        f"--root-ca={pki / 'prov' / layout.CA}",
        f"--token-file={pki / 'signer-token'}",
        wait=False,
    )
    _waits(signer, f"root holder {holder}:")


def test_a_signer_that_starts_before_its_root_holder_waits_for_it(
    pki: Path, root_holder: RootHolder, operator: requests.Session
) -> None:
    # An upgrade replaces the root holder while the signers start: a signer that exited would
    # sit in the kubelet's restart back-off (10 s, 20 s, ...) instead of signing.
    root_holder.kill()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            starting = pool.submit(start_signer, pki, root_holder, "early", "signer-token")
            wait_until(
                "the signer to try again",
                lambda: (
                    "waiting for the signing material, not serving yet"
                    in (pki / "early.log").read_text()
                ),
                30,
                0.2,
                retry_on=(FileNotFoundError,),
            )
        finally:
            root_holder.restart()
        signer = starting.result(timeout=60)
    try:
        assert sign(operator, signer.url).status_code == 200
    finally:
        signer.stop()


def test_a_signer_with_another_accounts_token_gets_no_material(
    pki: Path, root_holder: RootHolder
) -> None:
    impostor = Service(
        None,
        pki / "impostor.log",
        f"--root-holder={root_holder.material_url}",
        f"--root-ca={pki / 'prov' / layout.CA}",
        f"--token-file={pki / 'operator-token'}",
        wait=False,
    )
    _waits(impostor, f"root holder {root_holder.material_url}: HTTP 403")
    assert "is not the signers' ServiceAccount" in (pki / "impostor.log").read_text()


def test_a_root_rotation_reaches_every_signer(
    pki: Path, root_holder: RootHolder, signers: list[Service], operator: requests.Session
) -> None:
    admin = credential_session(pki, "alice")
    before = status(operator, root_holder.service)["material_sha256"]
    # A third signer that fetches once an hour: what the operator's gate must wait for.
    laggard = start_signer(pki, root_holder, "laggard", "signer-token", "3600", "--workers=1")
    addresses = [f"127.0.0.1:{s.port}" for s in (*signers, laggard)]
    ca = CAClient(
        signers[0].url, pki / "prov", root_url=root_holder.service.url, signers=lambda: addresses
    )
    try:
        wait_until("the laggard's first fetch", lambda: ca.signers_behind() == [], 30, 0.2)
        # Its worker fetched when it started, and will not again for an hour.
        wait_until("the laggard to fetch no more", lambda: material_age(operator, laggard) > 2, 30)
        started = admin.post(
            f"{root_holder.service.url}/rotate-root", json={"from": "idle"}, timeout=10
        )
        assert started.status_code == 200, started.text
        after = str(started.json()["material_sha256"])
        assert after != before
        for signer in signers:
            wait_until(
                f"{signer.url} to serve the material of phase both-trusted",
                functools.partial(serves, operator, signer, after),
                30,
                0.2,
            )
        # The other two serve the phase; the laggard does not, and the gate says so.
        assert ca.signers_behind() == [addresses[2]]
    finally:
        laggard.stop()
    assert ca.signers_behind() == [addresses[2]]  # a signer that does not answer is behind too
    # Every signer signs with the intermediate of the phase: the old one while both are trusted.
    signing = status(operator, root_holder.service)["signing"]
    for signer in signers:
        assert status(operator, signer)["signing"] == signing
        assert sign(operator, signer.url).status_code == 200
    # The later phases change the serving certificates' root, which pki/prov/ca.crt (the
    # roots the signers and these sessions trust, kept current by the kubelet in a cluster)
    # does not follow here; the e2e tests take a rotation to the end.


def test_signers_sign_on_while_the_root_holder_is_away(
    pki: Path, root_holder: RootHolder, signers: list[Service], operator: requests.Session
) -> None:
    # A signer that leaves while the root holder is away says what its index never got.
    leaver = start_signer(pki, root_holder, "leaver", "signer-token", FETCH_INTERVAL, "--workers=1")
    root_holder.kill()
    signed: set[str] = set()
    try:
        for signer in signers:
            wait_until(
                f"{signer.url} to report material older than its fetch interval",
                functools.partial(fetched_long_ago, operator, signer),
                30,
                0.2,
            )

        def pending() -> float:
            return sum(metric(operator, s, "hello_mtls_ca_index_reports_pending") for s in signers)

        before = pending()
        for _ in range(10):
            for signer in signers:
                answer = sign(operator, signer.url)
                assert answer.status_code == 200, answer.text
                signed.add(answer.json()["serial"])
        assert pending() - before == len(signed) == 20
        assert sign(operator, leaver.url).status_code == 200
        leaver.stop()
        assert "exiting with 1 records of issued certificates" in leaver.log.read_text()
    finally:
        leaver.stop()
        root_holder.restart()
    for signer in signers:
        wait_until(
            f"{signer.url} to fetch from the root holder again",
            functools.partial(fetched_lately, operator, signer),
            30,
            0.2,
        )
    wait_until("the records signed meanwhile in the index", lambda: indexed(pki, signed), 30, 0.2)
    for signer in signers:
        assert metric(operator, signer, "hello_mtls_ca_index_reports_pending") == 0


def test_the_operator_rotates_through_the_root_holder_and_reads_a_signer(
    pki: Path, root_holder: RootHolder, signers: list[Service]
) -> None:
    ca = CAClient(signers[0].url, pki / "prov", root_url=root_holder.service.url)
    assert ca.status().phase == status(credential_session(pki, None), root_holder.service)["phase"]
    # A provisioner may not start a rotation: the root holder says so (a signer would say 404).
    with pytest.raises(CARefused, match="HTTP 403: client .* may not start a root rotation"):
        ca.rotate_root("idle")


def test_the_operator_takes_a_new_crl_from_the_root_holder_before_the_signers_have_it(
    pki: Path, root_holder: RootHolder, operator: requests.Session
) -> None:
    # A signer that fetched its material once and will not again for an hour.
    slow = start_signer(pki, root_holder, "slow-signer", "signer-token", "3600", "--workers=1")
    try:
        # Its worker fetched when it started, and will not again for an hour.
        wait_until("the slow signer to fetch no more", lambda: material_age(operator, slow) > 2, 30)
        answer = operator.post(
            f"{root_holder.service.url}/sign",
            json={
                "csr": csr_pem(ec.generate_private_key(ec.SECP256R1())),
                "names": ["crl.demo"],
                "namespace": "demo",
            },
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        serial = answer.json()["serial"]
        ca = CAClient(slow.url, pki / "prov", root_url=root_holder.service.url)
        assert serial not in ca.status().revoked_serials
        revoked = credential_session(pki, "alice").post(
            f"{root_holder.service.url}/revoke", json={"serial": serial}, timeout=10
        )
        assert revoked.status_code == 200, revoked.text
        reader = credential_session(pki, None)
        assert not lists(reader, slow, {serial})  # the signer serves the old CRLs still
        assert serial in ca.status().revoked_serials
        root_holder.kill()  # away: the newer CRLs are kept, not the signer's older ones
        try:
            assert serial in ca.status().revoked_serials
        finally:
            root_holder.restart()
    finally:
        slow.stop()
