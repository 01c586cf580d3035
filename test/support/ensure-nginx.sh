#!/usr/bin/env bash
# Run before `npm test`: the suite checks configs with a real nginx and runs it on
# loopback. Installs Debian's nginx when it is missing and we may; otherwise says how.
set -euo pipefail
if [ -n "${NGINX_BINARY:-}" ] || command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "nginx is missing: installing it with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq nginx >/dev/null
  exit 0
fi
echo "The tests need nginx: install it (Debian: sudo apt-get install -y nginx) or set NGINX_BINARY." >&2
exit 1
