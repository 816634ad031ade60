#!/usr/bin/env bash
# Builds Raven's two Node-API addons when missing or older than any of their sources:
# - native/build/raven_relay.node from native/*.c: the proxy channels' data path. It uses the OpenSSL built into
#   node, whose symbols the addon resolves at load time;
# - native/build/raven_netns.node from native/netns/*.c: sockets and files inside network namespaces and
#   netlink requests over them (tunnel mode's kernel state without a process per read).
# It needs a C compiler and Node's own headers (node_api.h, uv.h, the OpenSSL headers); node-gyp is not needed
# for a few C files. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
include=$(node -p 'require("path").resolve(process.execPath, "../../include/node")')
if [ ! -f "$include/node_api.h" ] || [ ! -f "$include/openssl/evp.h" ] || [ ! -f "$include/uv.h" ]; then
  echo "build-native: Node's headers are not in $include (node_api.h, uv.h, openssl/evp.h); install Node.js with its include/ directory" >&2
  exit 1
fi
mkdir -p native/build

# build OUT SOURCES...: compiles when OUT is missing or older than a source (or a header beside it).
build() {
  local out=$1
  shift
  local stale=0
  [ -f "$out" ] || stale=1
  for f in "$@" $(dirname "$1")/*.h; do [ -f "$f" ] && [ "$f" -nt "$out" ] && stale=1; done
  [ "$stale" -eq 1 ] || return 0
  cc -O2 -g -Wall -Wextra -Werror -std=gnu11 -shared -fPIC -fvisibility=hidden -I"$include" -o "$out.tmp" "$@" -lpthread
  mv "$out.tmp" "$out"
  echo "build-native: built $out"
}

build native/build/raven_relay.node native/*.c
build native/build/raven_netns.node native/netns/*.c
