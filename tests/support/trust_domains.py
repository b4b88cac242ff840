"""Two trust domains made with the CA's own code, for federation tests."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from mtls_ca.authority import CA as Authority
from mtls_context.layout import CA, CERT, CRL, KEY, federated_bundle

OURS = "ours.example"
OTHER = "other.example"


class TrustDomain:
    """A trust domain's CA (root and signing intermediate) and the certificates it issues."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ca = Authority.create(organization=name)

    @property
    def root_pem(self) -> bytes:
        return self.ca.root_pem

    def id(self, path: str) -> str:
        return f"spiffe://{self.name}/{path}"

    def files(
        self,
        spiffe_id: str,
        *dns: str,
        federated: Sequence[TrustDomain] = (),
        signer: TrustDomain | None = None,
        crl: bool = False,
    ) -> dict[str, bytes]:
        """A certificate directory of this trust domain for ``spiffe_id`` (and ``dns`` names),
        trusting ``federated`` beside it; ``signer`` issues the leaf instead (an attacker)."""
        issued = (signer or self).ca.issue(
            *dns, uris=[spiffe_id], valid_for=datetime.timedelta(hours=1), common_name="w"
        )
        assert issued.key_pem is not None
        result = {CERT: issued.chain_pem, KEY: issued.key_pem, CA: self.root_pem}
        result.update(bundles(federated))
        if crl:
            result[CRL] = self.crl()
        return result

    def crl(self) -> bytes:
        """An empty CRL of the signing intermediate, valid for a week."""
        key = self.ca.intermediate_key
        assert key is not None
        now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.ca.intermediate.subject)
            .last_update(now)
            .next_update(now + datetime.timedelta(days=7))
        )
        signed = builder.sign(key, hashes.SHA256())
        return signed.public_bytes(serialization.Encoding.PEM)


def bundles(domains: Sequence[TrustDomain]) -> Mapping[str, bytes]:
    """The federated bundle files for ``domains``."""
    return {federated_bundle(domain.name): domain.root_pem for domain in domains}
