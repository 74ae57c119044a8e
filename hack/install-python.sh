#!/usr/bin/env bash
# Create .venv and install stemgen with every extra (what tests and the demo need).
# audiocraft and xformers go in with --no-deps: their own pins (old torch) are unsatisfiable.
# Usage: hack/install-python.sh [extras]   (default: operator,runner,client,dev)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-operator,runner,client,dev}"
VENV="${STEMGEN_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
stamp="$VENV/.stemgen-install-$(sha256sum pyproject.toml hack/install-python.sh | sha256sum | cut -c1-16)-${EXTRAS//,/_}"
build_native() {
  # The runner's AVX2 kernels (a no-op when built for these sources; skips unsupported CPUs).
  if [[ ",$EXTRAS," == *",runner,"* ]]; then
    "$VENV/bin/python" -m stemgen_runner.fastpath.native.build
  fi
}
if [[ -f "$stamp" ]]; then
  build_native
  exit 0
fi
echo "==> [install-python] installing stemgen[$EXTRAS] into $VENV (first run: torch is ~7 GB, a few minutes)" >&2
"${PIP[@]}" --upgrade pip setuptools wheel
"${PIP[@]}" -e ".[$EXTRAS]"
if [[ ",$EXTRAS," == *",runner,"* ]]; then
  "${PIP[@]}" --no-deps audiocraft==1.3.0 xformers==0.0.33.post1
fi
touch "$stamp"
build_native
