"""Whether a certificate directory's ``ca.crl`` may be enforced, without ever taking traffic down.

With CRL checking on, OpenSSL refuses a peer whose issuer has no CRL in the store ("unable to
get certificate CRL") and one whose CRL is past its nextUpdate ("CRL has expired"). So a
context enforces ``ca.crl`` only when every CRL in it parses, is already valid, and is more than
`STALE_MARGIN` short of its nextUpdate, and when one of them is of the issuer of the directory's
own certificate (a CRL file of an older intermediate than the one signing now is an old file).
Otherwise it serves without CRL checking and says why (`CRLDecision.stale`): a log line, the
``crl_stale`` field of `mtls_context.status.Status` and a metric. The CA signs its CRLs for a
week and again every day, so a CA that is down for days leaves every CRL in use.

Only the standard library: the few DER fields needed (issuer, thisUpdate, nextUpdate) are read
here, and OpenSSL checks the signatures when it uses the CRL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mtls_context.der import children as _children
from mtls_context.der import content as _content
from mtls_context.der import pem_blocks as _blocks

__all__ = ["STALE_MARGIN", "CRLDecision", "decide"]

STALE_MARGIN = timedelta(hours=6)
"""A CRL this close to its nextUpdate is no longer enforced (a context lives up to its max age,
one hour by default, before it is built again)."""


@dataclass(frozen=True)
class CRLDecision:
    """What to do with a ``ca.crl``."""

    pem: bytes | None
    """The CRLs to load (None: no CRL checking)."""
    stale: str | None
    """Why a ``ca.crl`` that is present is not enforced (None: enforced, or no ``ca.crl``)."""
    drop_at: datetime | None = None
    """When the CRLs loaded become stale: build the context again then."""


def decide(crl_pem: bytes | None, chain_pem: bytes, now: datetime | None = None) -> CRLDecision:
    """Whether ``crl_pem`` (``ca.crl``) may be enforced by a context presenting ``chain_pem``."""
    if not crl_pem or not crl_pem.strip():
        return CRLDecision(None, None)
    now = now or datetime.now(UTC)
    try:
        crls = [_crl_fields(der) for kind, der in _blocks(crl_pem) if kind == b"X509 CRL"]
        own = [der for kind, der in _blocks(chain_pem) if kind == b"CERTIFICATE"]
        own_issuer = _certificate_issuer(own[0]) if own else None
    except ValueError as e:
        return CRLDecision(None, f"ca.crl does not parse: {e}")
    if not crls:
        return CRLDecision(None, "ca.crl holds no CRL")
    if own_issuer is not None and own_issuer not in {issuer for issuer, _, _ in crls}:
        return CRLDecision(None, "ca.crl has no CRL of this certificate's issuer (an old CRL)")
    drop_at = min((next_update - STALE_MARGIN for _, _, next_update in crls), default=None)
    if any(this_update > now for _, this_update, _ in crls):
        return CRLDecision(None, "ca.crl is not valid yet (thisUpdate is in the future)")
    if drop_at is not None and drop_at <= now:
        last = min(next_update for _, _, next_update in crls)
        return CRLDecision(None, f"ca.crl is stale (nextUpdate {last:%Y-%m-%dT%H:%M:%SZ})")
    return CRLDecision(crl_pem, None, drop_at)


def _crl_fields(der: bytes) -> tuple[bytes, datetime, datetime]:
    """(issuer Name DER, thisUpdate, nextUpdate) of a DER CertificateList (RFC 5280 5.1)."""
    tbs = _children(_content(der, 0x30))[0]
    fields = _children(_content(tbs, 0x30))
    if fields and fields[0][0] == 0x02:  # version v2
        fields = fields[1:]
    if len(fields) < 4:
        raise ValueError("a CRL without nextUpdate")
    issuer, this_update, next_update = fields[1], fields[2], fields[3]
    if issuer[0] != 0x30:
        raise ValueError("a CRL issuer is not a Name")
    return issuer, _time(this_update), _time(next_update)


def _certificate_issuer(der: bytes) -> bytes:
    """The issuer Name DER of a DER certificate (RFC 5280 4.1)."""
    tbs = _children(_content(der, 0x30))[0]
    fields = _children(_content(tbs, 0x30))
    if fields and fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    if len(fields) < 3 or fields[2][0] != 0x30:
        raise ValueError("a certificate without an issuer")
    return fields[2]


def _time(tlv: bytes) -> datetime:
    tag = tlv[0]
    text = _content(tlv, tag).decode("ascii", errors="replace")
    if tag == 0x17:  # UTCTime, YYMMDDHHMMSSZ (RFC 5280 4.1.2.5.1)
        moment = datetime.strptime(text, "%y%m%d%H%M%SZ")
    elif tag == 0x18:  # GeneralizedTime, YYYYMMDDHHMMSSZ
        moment = datetime.strptime(text, "%Y%m%d%H%M%SZ")
    else:
        raise ValueError("a CRL time is neither UTCTime nor GeneralizedTime")
    return moment.replace(tzinfo=UTC)
