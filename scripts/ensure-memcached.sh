#!/usr/bin/env bash
# Installs memcached from the Debian packages when it is missing, for the MemcachedStore specs,
# which start their own servers on loopback ports. Safe to run again: it does nothing when
# memcached is already on the PATH.
set -euo pipefail
if command -v memcached >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends memcached >/dev/null
# The package may start a system-wide server on 11211; the specs use servers of their own.
if command -v service >/dev/null 2>&1; then service memcached stop >/dev/null 2>&1 || true; fi
command -v memcached >/dev/null
