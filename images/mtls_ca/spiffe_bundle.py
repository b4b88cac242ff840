"""The trust bundle as a SPIFFE bundle (SPIFFE Trust Domain and Bundle, section 4): a JWK Set
served at ``GET /spiffe-bundle``, what another trust domain fetches to federate with this one.

One JWK per trusted root (two during a root rotation), ``use: x509-svid``, with the root's
public key numbers and the root certificate itself in ``x5c``. ``spiffe_sequence`` is the
state's `mtls_ca.state.State.bundle_sequence`: persisted, and raised by every change of the
roots, so it only grows, also across restarts. A JOSE library would add a dependency to the CA
for the few lines below; `cryptography` gives the numbers.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

if TYPE_CHECKING:
    from .state import State

__all__ = ["REFRESH_HINT", "bundle", "jwk"]

REFRESH_HINT = 30
"""``spiffe_refresh_hint`` in seconds, the operator's default rotation grace (30 s); one small
GET per 30 s costs nothing. A root rotation keeps both roots trusted for the grace before the new
intermediate signs. A federated consumer fetches within the hint, and its pods hold the new root
after its own Secret write and the kubelet's update too: up to the hint plus a few seconds after
the bundle changed, which leaves the default grace no margin, so a federated install sets it to
twice the hint or more (docs/federation.md)."""

# RFC 7518 section 6.2.1.1: the JWK name of each curve the CA accepts.
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def bundle(state: State) -> dict[str, Any]:
    """The SPIFFE bundle of ``state``: every trusted root as a JWK, oldest first."""
    return {
        "keys": [jwk(ca.root) for ca in state.generations],
        "spiffe_sequence": state.bundle_sequence,
        "spiffe_refresh_hint": REFRESH_HINT,
    }


def jwk(root: x509.Certificate) -> dict[str, Any]:
    """The ``x509-svid`` JWK of a root certificate (RFC 7517 section 4, RFC 7518 section 6).

    Raises:
        ValueError: for a key that is neither EC nor RSA.
    """
    key = root.public_key()
    numbers: dict[str, str]
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVES:
            raise ValueError(f"curve {key.curve.name} has no JWK name")
        size = (key.curve.key_size + 7) // 8  # RFC 7518 6.2.1.2: the full length of the field
        point = key.public_numbers()
        numbers = {
            "kty": "EC",
            "crv": _CURVES[key.curve.name],
            "x": _base64url(point.x.to_bytes(size, "big")),
            "y": _base64url(point.y.to_bytes(size, "big")),
        }
    elif isinstance(key, rsa.RSAPublicKey):
        public = key.public_numbers()
        numbers = {"kty": "RSA", "n": _base64url_uint(public.n), "e": _base64url_uint(public.e)}
    else:
        raise ValueError(f"a root key of type {type(key).__name__} has no JWK form here")
    der = root.public_bytes(serialization.Encoding.DER)
    # x5c is standard base64 with padding (RFC 7517 section 4.7), not base64url.
    return {**numbers, "use": "x509-svid", "x5c": [base64.b64encode(der).decode()]}


def _base64url_uint(value: int) -> str:
    """RFC 7518 section 2 Base64urlUInt: the shortest big-endian bytes, at least one."""
    return _base64url(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
