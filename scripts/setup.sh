#!/usr/bin/env bash
# Installs what Raven needs on a fresh Debian machine with Node 20 (run as root), from Debian's packages when
# missing: nats-server, iproute2, openssh-server (bench:proxy's reference path is a private sshd with ssh -R),
# openssl (the fleet's PKI) and chromium (the `raven ui` browser test); then the npm dependencies from the
# lock file. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v nats-server >/dev/null 2>&1 || need_apt+=(nats-server)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# Headless Chromium for the `raven ui` browser test (test/e2e), driven by playwright-core.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The Debian package enables a system nats-server on 4222; Raven runs its own servers, so keep it from
# holding the ports (harmless where systemd is not running).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nats-server 2>/dev/null; then
  systemctl stop nats-server || true
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "setup: Node.js 20 or newer is required (found $(node --version))" >&2
  exit 1
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
fi
echo "setup: ready (nats-server $(nats-server --version | awk '{print $2}'), node $(node --version))"
