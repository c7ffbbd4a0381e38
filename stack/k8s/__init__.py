"""PickSpin on Kubernetes: Knative Service builders and the ``pickspin backends`` command.

The Helm chart (helm/pickspin), the plain manifests (knative/) and the CLI all produce the same
objects; :mod:`stack.k8s.knative` is the reference the tests hold the other two against.
"""
