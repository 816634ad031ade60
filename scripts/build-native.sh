#!/usr/bin/env bash
# Builds the proxy's native data path (native/relay.c -> native/build/raven_relay.node), a Node-API addon, when
# it is missing or older than its source. It needs a C compiler and Node's own headers (node_api.h and the
# OpenSSL headers of the OpenSSL built into node, whose symbols the addon uses at load time); node-gyp is not
# needed for one C file. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
src=native/relay.c
out=native/build/raven_relay.node
if [ -f "$out" ] && [ "$out" -nt "$src" ]; then exit 0; fi
include=$(node -p 'require("path").resolve(process.execPath, "../../include/node")')
if [ ! -f "$include/node_api.h" ] || [ ! -f "$include/openssl/evp.h" ]; then
  echo "build-native: Node's headers are not in $include (node_api.h, openssl/evp.h); install Node.js with its include/ directory" >&2
  exit 1
fi
mkdir -p native/build
cc -O2 -g -Wall -Wextra -Werror -std=gnu11 -shared -fPIC -fvisibility=hidden -I"$include" -o "$out.tmp" "$src" -lpthread
mv "$out.tmp" "$out"
echo "build-native: built $out"
