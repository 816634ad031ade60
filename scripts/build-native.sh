#!/usr/bin/env bash
# Builds the proxy's native data path (native/*.c -> native/build/raven_relay.node), a Node-API addon, when it
# is missing or older than any of its sources. It needs a C compiler and Node's own headers (node_api.h and the
# OpenSSL headers of the OpenSSL built into node, whose symbols the addon uses at load time); node-gyp is not
# needed for one C file. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
out=native/build/raven_relay.node
stale=0
[ -f "$out" ] || stale=1
for f in native/*.c native/*.h; do [ "$f" -nt "$out" ] && stale=1; done
[ "$stale" -eq 1 ] || exit 0
include=$(node -p 'require("path").resolve(process.execPath, "../../include/node")')
if [ ! -f "$include/node_api.h" ] || [ ! -f "$include/openssl/evp.h" ]; then
  echo "build-native: Node's headers are not in $include (node_api.h, openssl/evp.h); install Node.js with its include/ directory" >&2
  exit 1
fi
mkdir -p native/build
cc -O2 -g -Wall -Wextra -Werror -std=gnu11 -shared -fPIC -fvisibility=hidden -I"$include" -o "$out.tmp" native/*.c -lpthread
mv "$out.tmp" "$out"
echo "build-native: built $out"
