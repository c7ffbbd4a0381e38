#!/usr/bin/env bash
# Regenerate the committed gRPC stubs from keda-scaler/proto/externalscaler.proto.
# Usage: bash keda-scaler/gen.sh   (uses the repo's .venv python unless $PYTHON is set)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$py" ] || py=python3
cd "$here" && exec "$py" -m pickspin_scaler._gen "$@"
