"""``hello-mtls``: check, show and renew what hello-mtls installed, from a workstation.

It reads the install through the Kubernetes API only (the user's kubeconfig, as ``kubectl``
does) and the CA's read-only HTTP API through a port-forward to the CA pod; it imports no
operator or CA code, only the names they share (`mtls_contract.marks`, the pod annotations of
`mtls_operator.claims`).

Modules: `cluster` (every API call), `ca_status` (``GET /status`` and the served chain),
`checks` and `identities` (pure: facts in, lines out), `cli` (the commands).
"""
