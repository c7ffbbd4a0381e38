from __future__ import annotations

import os

# Tests must never reach beyond 127.0.0.1 and never load weights from a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

# Import numpy here, in the main thread, before any test starts a classifier that loads in a background
# thread: pytest.approx looks numpy up in sys.modules and failed on a half-imported module
# ("partially initialized module 'numpy' has no attribute 'isscalar'") when that thread was importing it.
import numpy  # noqa: F401
