"""How the reconciler behaves: the `Settings` that `config` reads and `reconciler` follows."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field

from mtls_contract import durations
from mtls_operator.claims import Rules

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    """How the reconciler behaves; every default is the chart's."""

    rules: Rules = field(default_factory=Rules)
    renew_fraction: float = durations.RENEW_FRACTION
    resync_seconds: float = 10.0
    """How often every Secret is checked against renewal time and the CA's state."""
    status_seconds: float = 5.0
    """How often the CA's state (roots, intermediate, policy, rotation phase) is read."""
    rotation_grace: datetime.timedelta = datetime.timedelta(seconds=30)
    labels: Mapping[str, str] = field(default_factory=dict)
    """Extra labels on every Secret and TLS-policy ConfigMap."""
