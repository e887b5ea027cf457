#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite: lint, unit and integration tests
# (a private mosquitto is started by the tests themselves). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "==> ruff"
.venv/bin/ruff check edge_ad tests
.venv/bin/ruff format --check edge_ad tests
echo "==> pytest"
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=25 "$@"  # the slowest 25: where CI time goes
