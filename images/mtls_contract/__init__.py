"""What the CA, the operator and the ``hello-mtls`` command agree on: names, never code that acts.

The CA (`mtls_ca`) applies these rules when it signs, the operator (`mtls_operator`) before it
asks, the command (`mtls_cli`) when it reads what both wrote. Only the standard library and
``publicsuffixlist`` here (an import contract checks it), so each of them may import it:

* `name_rules`: which DNS names and IP addresses a namespace may have
* `durations`: the duration syntax and bounds, ``BACKDATE``, the renewal fraction
* `identities`: SPIFFE IDs of workloads, and the roles of the CA's own callers
* `marks`: the ``hello-mtls.dev/*`` label and annotations the operator writes, and its Lease
* `phases`: the root rotation's phases, one enum
* `ca_api`: the ``POST /sign`` request and answer, the ``GET /status`` fields clients act on
"""
