"""Which namespaces an installation serves. A pure rule.

The chart's admission policies select the same namespaces (``hello-mtls.servedNamespaces`` in
charts/hello-mtls/templates/_admission.tpl; tests/unit/test_operator_scope.py compares): every
namespace, or only those of ``operator.watchNamespaces``, but never ``kube-system`` nor the
installation's own. The pod-certificate signer answers requests from these namespaces only.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NEVER_SERVED", "Scope"]

NEVER_SERVED = ("kube-system",)
"""Served by no installation, whatever ``operator.watchNamespaces`` says (with the release
namespace, `Scope.own`)."""


@dataclass(frozen=True)
class Scope:
    """The namespaces one installation serves."""

    own: str
    """The installation's own namespace (the release namespace): the CA's and the operator's."""
    watched: frozenset[str] = frozenset()
    """``operator.watchNamespaces``; empty: every namespace."""

    def refusal(self, namespace: str) -> str | None:
        """Why ``namespace`` is not served, fit for an Event; None if it is served."""
        if namespace in NEVER_SERVED or namespace == self.own:
            return (
                f"namespace '{namespace}' is not served: hello-mtls never serves"
                f" {' nor '.join(repr(n) for n in (*NEVER_SERVED, self.own))}"
            )
        if self.watched and namespace not in self.watched:
            listed = ", ".join(sorted(self.watched))
            return (
                f"namespace '{namespace}' is not served: it is not in operator.watchNamespaces"
                f" ({listed})"
            )
        return None
