#!/usr/bin/env bash
# Installs what is missing, builds helm-hub (release), and runs it in the foreground on its
# embedded PostgreSQL. Data dir: $HELM_DATA_DIR, else /var/lib/helm-hub as root, else
# ~/.local/share/helm-hub. Extra arguments go to `helm-hub serve`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash packaging/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target helm-hub
if [[ -z "${HELM_DATA_DIR:-}" ]]; then
  if [[ $(id -u) -eq 0 ]]; then HELM_DATA_DIR=/var/lib/helm-hub; else HELM_DATA_DIR="$HOME/.local/share/helm-hub"; fi
fi
# In-tree plugins are signed with the build tree's development key, which this hub trusts.
export HELM_PLUGINS_ALLOW_UNSIGNED=${HELM_PLUGINS_ALLOW_UNSIGNED:-false}
echo "run.sh: starting helm-hub with data dir $HELM_DATA_DIR"
exec "$root/build/release/host/helm-hub" serve --data-dir "$HELM_DATA_DIR" "$@"
