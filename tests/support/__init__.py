"""Helpers the test tiers share (not tests themselves). The processes the tiers and the
benchmarks both start (the CA, the example servers, ``wait_until``) are in ``hack/harness``.

* `certdirs`, `operator_pki`: certificates made with trustme, independent of our own CA code
* `operator_fakes`: in-memory stand-ins for the operator's unit tests
* `cluster_api`, `pods`, `operator_workloads`: kubectl, object builders and probes for e2e
* `openapi_schema`: offline validation against the Kubernetes OpenAPI document
* `spiffe_bundles`: a SPIFFE bundle checked against the SPIFFE spec and the roots it names
"""
