"""TLS policy profiles, as every ``tls-policy.json`` and ``GET /tls-policy`` carry them.

What a profile means is the library's (`mtls_context.tls_policy.PROFILES`): the CA writes the
document the apps read, from the same definition.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mtls_context.tls_policy import PROFILES, TLSPolicy

__all__ = ["PROFILES", "policy_bytes", "render", "tls_policy"]


def tls_policy(profile: str) -> dict[str, str]:
    """The policy of ``profile`` (``intermediate`` or ``modern``) as a fresh dict.

    Raises:
        ValueError: for an unknown profile.
    """
    return TLSPolicy.named(profile).document()


def policy_bytes(tls_policy: Mapping[str, Any]) -> bytes:
    """``tls-policy.json`` holding ``tls_policy``: stable key order, newline-terminated.

    The one serialiser: the CA writes its own files with it (`render`) and the operator writes
    and compares every Secret's copy with it, so a policy that did not change never looks changed.
    """
    return (json.dumps(dict(tls_policy), sort_keys=True, indent=2) + "\n").encode()


def render(profile: str) -> bytes:
    """``tls-policy.json`` for ``profile``."""
    return policy_bytes(tls_policy(profile))
