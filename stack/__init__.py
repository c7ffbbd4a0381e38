"""The top layer: what assembles PickSpin's components into something to run.

The ``pickspin`` command (``stack.cli``), the single-machine stack (``stack.localstack``) with its
activators (``stack.activator``, a local stand-in for Knative's activator driven by the scaler's
policy), the simulated and llama.cpp backends it starts, the trace-driven simulator (``stack.sim``)
and the Kubernetes tooling (``stack.k8s``). It may import every component; no component imports it.
"""
