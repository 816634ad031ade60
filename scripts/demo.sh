#!/usr/bin/env bash
# Sets up and starts the demo fleet (topology.json): hub, one leaf per edge domain, 2 coordinators, node and
# gateway actors. Ctrl-C stops everything. Extra arguments go to the launcher (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node --import tsx services/fleet/main.ts "$@"
