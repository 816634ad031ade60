#!/usr/bin/env bash
# Installs what Raven needs on a fresh Debian machine with Node 20 (run as root), from Debian's packages when
# missing: nats-server, iproute2, openssh-server (bench:proxy's reference path is a private sshd with ssh -R),
# openssl (the fleet's PKI), chromium (the `raven ui` browser test), strongSwan (tunnel mode's IPsec between
# gateways, with kernel-libipsec for kernels without ESP), wireguard-go and wireguard-tools (tunnel mode's
# userspace WireGuard driver, for kernels without the WireGuard module), ping (the tunnel tests) and a C compiler
# (the proxy's native data path); then the npm dependencies from the lock file, and the native data path
# (scripts/build-native.sh). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v nats-server >/dev/null 2>&1 || need_apt+=(nats-server)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# Headless Chromium for the `raven ui` browser test (test/e2e), driven by playwright-core.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
# Tunnel mode: charon + swanctl, kernel-libipsec (userspace ESP where the kernel has none), the crypto plugins.
[ -x /usr/lib/ipsec/charon ] || need_apt+=(strongswan-charon)
[ -x /usr/sbin/swanctl ] || need_apt+=(strongswan-swanctl)
[ -f /usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so ] || need_apt+=(libcharon-extra-plugins)
[ -f /usr/lib/ipsec/plugins/libstrongswan-openssl.so ] || need_apt+=(libstrongswan-standard-plugins)
# Tunnel mode's WireGuard driver: userspace wireguard-go and the wg tool. Installed without recommends:
# wireguard-tools recommends the kernel module, which Debian satisfies with a whole linux-image package.
need_apt_norec=()
command -v wireguard-go >/dev/null 2>&1 || need_apt_norec+=(wireguard-go)
command -v wg >/dev/null 2>&1 || need_apt_norec+=(wireguard-tools)
# bench:scrape's (and its test's) real monitoring client: Debian's Prometheus, without recommends (it would
# pull in node-exporter and more); in a container without systemd no daemon of its own starts.
[ -x /usr/bin/prometheus ] || need_apt_norec+=(prometheus)
command -v ping >/dev/null 2>&1 || need_apt+=(iputils-ping)
# curl: the proxy and tunnel tests use it as the real HTTP client (CONNECT, proxy URL, a scrape from a pod).
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# stress-ng: the stability test and bench:stability hog the CPU with it.
command -v stress-ng >/dev/null 2>&1 || need_apt+=(stress-ng)
# The proxy's native data path (native/relay.c), built against Node's own headers.
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
if [ ${#need_apt[@]} -gt 0 ] || [ ${#need_apt_norec[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} ${need_apt_norec[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  [ ${#need_apt[@]} -eq 0 ] || apt-get install -y -qq "${need_apt[@]}" >/dev/null
  [ ${#need_apt_norec[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${need_apt_norec[@]}" >/dev/null
fi
# The Debian package enables a system nats-server on 4222; Raven runs its own servers, so keep it from
# holding the ports (harmless where systemd is not running).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nats-server 2>/dev/null; then
  systemctl stop nats-server || true
fi
# Likewise strongSwan's packages pull in a system IKE daemon (strongswan-starter); Raven runs one charon per
# gateway in the gateway's namespace, so keep the system one off.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet strongswan-starter 2>/dev/null; then
  systemctl stop strongswan-starter || true
  systemctl disable strongswan-starter 2>/dev/null || true
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
bash scripts/build-native.sh
echo "setup: ready (nats-server $(nats-server --version | awk '{print $2}'), node $(node --version))"
