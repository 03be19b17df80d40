#!/usr/bin/env bash
# Create .venv and install the gateway with its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
# torch first, pinned to the CPU build: a bare requirement would pull several GB of CUDA wheels.
.venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import gateway, torch, pynetdicom; print('gateway', gateway.__version__, 'torch', torch.__version__)"
# Independent FHIR checkers and clients for the tests (tests/node/package.json, pinned by its lock file): the
# official R4 and R5 JSON schemas, FHIR.js and fhir-kit-client. Installed here so that the tests need no network.
if command -v npm >/dev/null; then
  npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
else
  echo "npm is missing (scripts/system-deps.sh installs it): the FHIR schema and fhir-kit-client tests will fail" >&2
fi
