"""``hello-mtls``: check, show and renew what hello-mtls installed, from a workstation.

It reads the install through the Kubernetes API only (the user's kubeconfig, as ``kubectl``
does) and the CA's read-only HTTP API through a port-forward to the CA pod; it imports no
operator or CA code, only what they share (`mtls_contract`: the ``hello-mtls.dev/*`` keys, the
rotation phases) and `mtls_operator.claims.secret_of`.

Modules: `cluster` (every API call), `ca_status` (``GET /status`` and the served chain),
`checks` and `identities` (pure: facts in, lines out), `cli` (the commands). `stale_watch` is
the chart's optional in-cluster stale-certificate watch (``hello-mtls-stale-watch``), which shares
the served-certificate comparison of `reloads`.
"""
