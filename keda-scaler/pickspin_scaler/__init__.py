"""PickSpin's "Spin": the KEDA external scaler and its local twin (the activator).

Importing the package is cheap: gRPC and the generated stubs load only in ``server``.
"""

from __future__ import annotations

__all__ = ["SERVICE_NAME"]

#: Fully qualified gRPC service name (package ``externalscaler``), as KEDA calls it.
SERVICE_NAME = "externalscaler.ExternalScaler"
