"""hello-mtls certificate authority.

Modules, each with one job:

* `authority`: the CA core (``CA``): root, intermediate, the leaves they sign
* `name_rules`: what the CA agrees to sign (names, durations), pure; shared with the operator
* `tls_profiles`: the TLS profiles, rendered as ``tls-policy.json``; shared with the operator
* `rotation`: the root rotation state machine
* `state`: the persisted state and where it lives (``DIR`` or, with `k8s_secrets`, a Secret)
* `k8s_secrets`: the Secrets the CA owns (its state, the operator's credential)
* `sign_request`: ``POST /sign`` without the web framework
* `state_cache`: the cached view of the state that request handlers read
* `upkeep`: what the service renews by itself (intermediate, serving cert, credential)
* `http_api`: the HTTPS API (Flask); `metrics`: its Prometheus metrics
* `gunicorn_app`: ``hello-mtls-ca serve`` under gunicorn
* `cli`: ``hello-mtls-ca``
"""
