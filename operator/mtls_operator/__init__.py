"""The hello-mtls operator: annotated pods get certificates in Secrets, renewed and healed.

Run it with ``kopf run -m mtls_operator.handlers --standalone --all-namespaces`` (the image's
``hello-mtls-operator`` command does exactly that). The modules, lowest first:

* `claims`: a pod's annotations → `Claim` (the CA's own name and duration rules)
* `certs`: keys, CSRs, and `inspect` of what a Secret holds
* `tlssecret`: the Secret body from a ``POST /sign`` answer; owner references
* `decisions`: what a Secret needs (issue, refresh trust, nothing) and who gets it on a conflict
* `rotation`, `retries`: when to advance the CA's root rotation; backoff for failed attempts
* `ports`, `reconciler`: what it needs from outside; the level-triggered loop that ties it together
* `kube`, `ca_client`: the Kubernetes API and the CA's HTTPS API
* `handlers`: the kopf handlers, a few lines each
"""
