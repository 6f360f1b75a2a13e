#!/usr/bin/env bash
# Installs what is missing, builds everything with warnings as errors, and runs every test
# (unit, integration against real PostgreSQL/TLS/binaries, the JSON-Schema suite), ending with
# CTest's summary.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
start=$(date +%s)
bash packaging/install-deps.sh
command -v ccache >/dev/null && ccache --max-size=5G >/dev/null 2>&1 || true
cmake --preset ci
cmake --build --preset ci
ctest --preset ci
echo "test.sh: finished in $(( $(date +%s) - start )) s"
