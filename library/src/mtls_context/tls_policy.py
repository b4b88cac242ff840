"""The TLS policy document (``tls-policy.json``), its profiles, and how it is applied to a context.

The JSON is fixed between the CA and the apps::

    {"profile": "intermediate" | "modern", "min_version": "TLSv1.2" | "TLSv1.3",
     "ciphers": "<OpenSSL cipher string for TLS <= 1.2; '' under modern>"}

Readers ignore unknown keys, so the CA can add fields without breaking older apps. The profiles
follow Mozilla's Server Side TLS guidelines 6.0; both allow the key exchange groups X25519, P-256
and P-384 only, whatever the JSON says.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass

from mtls_context.groups import set_groups

__all__ = ["DEFAULT_POLICY", "GROUPS", "INTERMEDIATE_CIPHERS", "PROFILES", "TLSPolicy"]

# Mozilla Server Side TLS "intermediate" (guidelines 6.0), which already dropped the DHE suites.
INTERMEDIATE_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)
# Mozilla intermediate and modern, without the post-quantum hybrid OpenSSL 3.0 does not have.
GROUPS = "X25519:P-256:P-384"

_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
_VERSION_NAMES = {version: name for name, version in _VERSIONS.items()}


@dataclass(frozen=True)
class TLSPolicy:
    """Which TLS versions and (TLS <= 1.2) cipher suites a context accepts."""

    profile: str
    min_version: ssl.TLSVersion
    ciphers: str

    @classmethod
    def from_json(cls, data: bytes) -> TLSPolicy:
        """Parse ``tls-policy.json``.

        Raises:
            ValueError: if the JSON is malformed, names an unknown profile or version, or is
                inconsistent (``modern`` below TLS 1.3, ``intermediate`` without ciphers).
        """
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"TLS policy is not valid JSON: {e}") from None
        if not isinstance(raw, dict):
            raise ValueError("TLS policy must be a JSON object")
        profile = raw.get("profile", "intermediate")
        if profile not in PROFILES:
            raise ValueError(f"unknown TLS profile {profile!r} (expected one of {tuple(PROFILES)})")
        default = PROFILES[profile]
        version_name = raw.get("min_version", _VERSION_NAMES[default.min_version])
        if version_name not in _VERSIONS:
            raise ValueError(f"unsupported min_version {version_name!r} (expected TLSv1.2 or 1.3)")
        ciphers = raw.get("ciphers", default.ciphers)
        if not isinstance(ciphers, str):
            raise ValueError("TLS policy ciphers must be a string")
        policy = cls(profile, _VERSIONS[version_name], ciphers)
        if profile == "modern" and policy.min_version is not ssl.TLSVersion.TLSv1_3:
            raise ValueError("the modern TLS profile needs min_version TLSv1.3")
        if policy.min_version is ssl.TLSVersion.TLSv1_2 and not ciphers:
            raise ValueError("a TLS policy that allows TLS 1.2 needs a cipher list")
        return policy

    @classmethod
    def named(cls, profile: str) -> TLSPolicy:
        """The policy of a profile by name (``intermediate`` or ``modern``).

        Raises:
            ValueError: for an unknown profile.
        """
        try:
            return PROFILES[profile]
        except KeyError:
            raise ValueError(
                f"TLS profile '{profile}' is unknown (use {' or '.join(PROFILES)})"
            ) from None

    def document(self) -> dict[str, str]:
        """The policy as the JSON object of ``tls-policy.json``."""
        return {
            "profile": self.profile,
            "min_version": _VERSION_NAMES[self.min_version],
            "ciphers": self.ciphers,
        }

    def apply(self, context: ssl.SSLContext) -> None:
        """Set versions, ciphers, groups and options on a context that is still being built.

        Never call this on a context that is already in use: build a new one instead.

        Raises:
            ssl.SSLError: if OpenSSL knows none of the ciphers.
        """
        context.minimum_version = self.min_version
        if self.min_version is ssl.TLSVersion.TLSv1_2:
            context.set_ciphers(self.ciphers)
        set_groups(context, GROUPS)
        context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        # The client picks the cipher (Mozilla's guidelines; every allowed suite is strong).
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE


PROFILES: dict[str, TLSPolicy] = {
    "intermediate": TLSPolicy("intermediate", ssl.TLSVersion.TLSv1_2, INTERMEDIATE_CIPHERS),
    "modern": TLSPolicy("modern", ssl.TLSVersion.TLSv1_3, ""),
}
DEFAULT_POLICY = PROFILES["intermediate"]
