#!/usr/bin/env bash
# Everything the test suite needs, then the suite. Idempotent: a warm machine skips the installs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/install-python.sh
bash hack/build-control-plane.sh >/dev/null
.venv/bin/python -c "from stemgen_dev.azurite import ensure_azurite; ensure_azurite()"
.venv/bin/ruff check .
.venv/bin/python -m stemgen_api.crd --check
exec .venv/bin/pytest "$@"
