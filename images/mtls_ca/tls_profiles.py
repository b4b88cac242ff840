"""TLS policy profiles, as every ``tls-policy.json`` and ``GET /tls-policy`` carry them.

What a profile means is the library's (`mtls_context.tls_policy.PROFILES`): the CA writes the
document the apps read, from the same definition.
"""

from __future__ import annotations

import json

from mtls_context.tls_policy import PROFILES, TLSPolicy

__all__ = ["PROFILES", "render", "tls_policy"]


def tls_policy(profile: str) -> dict[str, str]:
    """The policy of ``profile`` (``intermediate`` or ``modern``) as a fresh dict.

    Raises:
        ValueError: for an unknown profile.
    """
    return TLSPolicy.named(profile).document()


def render(profile: str) -> bytes:
    """``tls-policy.json`` for ``profile``: stable key order, newline-terminated."""
    return (json.dumps(tls_policy(profile), sort_keys=True, indent=2) + "\n").encode()
