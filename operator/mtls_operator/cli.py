"""``hello-mtls-operator``: ``kopf run`` with this operator's handlers and safe defaults.

Arguments are kopf's own (``--namespace NS`` repeated, ``--liveness URL``, ``--verbose``...).
Without ``--namespace`` it watches all namespaces. It always runs ``--standalone``: kopf's
peering would pause kopf's handlers but not the threads this operator starts, so which replica
works is decided by a Lease instead (`mtls_operator.leadership`; "High availability" in
docs/operator.md).
"""

from __future__ import annotations

import sys

from kopf import cli

__all__ = ["main"]

_SCOPE_FLAGS = {"-n", "--namespace", "-A", "--all-namespaces"}


def main(argv: list[str] | None = None) -> None:
    """Run the operator until it is stopped (SIGTERM/SIGINT)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a in _SCOPE_FLAGS or a.startswith("--namespace=") for a in args):
        args.append("--all-namespaces")
    cli.main(["run", "--standalone", "--module", "mtls_operator.handlers", *args])
