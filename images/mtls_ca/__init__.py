"""hello-mtls certificate authority.

Modules, each with one job: ``authority`` (the CA core: root, intermediate, leaves), ``policy``
(pure name and duration rules, shared with the operator), ``tlspolicy`` (TLS profiles), ``state``
and ``k8s_secrets`` (where the CA lives), ``rotation`` (root rotation state machine), ``service``
(the HTTPS API), ``cli`` (``hello-mtls-ca``).
"""
