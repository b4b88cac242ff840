"""Shared test configuration.

Tiers are chosen by path: ``make test`` runs ``tests/unit`` and ``tests/integration``;
``make e2e`` runs ``tests/e2e`` against the cluster in ``KUBECONFIG``.
"""
