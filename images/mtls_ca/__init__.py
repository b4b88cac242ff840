"""hello-mtls certificate authority.

Modules, each with one job:

* `authority`: the CA core (``CA``): root, intermediate, the leaves they sign
* `tls_profiles`: the TLS profiles, rendered as ``tls-policy.json``; shared with the operator
* `rotation`: the root rotation state machine
* `state`: the persisted state and the directory it lives in (a volume only the CA mounts)
* `k8s_secrets`: the one Secret the CA writes: the operator's provisioner credential
* `signer_auth`: the root holder's TokenReview check that a caller is a CA signer pod
* `signer_material`: a signer pod's signing material, fetched from the root holder into memory
* `sign_request`: ``POST /sign`` without the web framework
* `state_cache`: the cached view of the state that request handlers read
* `upkeep`: what the service renews by itself (intermediate, serving cert, credential)
* `http_api`: the HTTPS API (Flask); `metrics`: its Prometheus metrics
* `gunicorn_app`: ``hello-mtls-ca serve`` under gunicorn
* `cli`: ``hello-mtls-ca``

What it agrees to sign (names, durations, SPIFFE IDs) is `mtls_contract`'s, which the operator
shares.
"""
