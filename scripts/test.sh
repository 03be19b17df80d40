#!/usr/bin/env bash
# Set up everything the tests need, then lint, type-check and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup.sh
.venv/bin/ruff check gateway tests benchmarks samples
.venv/bin/mypy
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
