#!/usr/bin/env bash
# Run before `npm test`: the suite checks configs with a real nginx (and its Lua module, for
# dynamic mode) and runs it on loopback, drives the status page in a headless Chromium, and
# pastes the demo's curl commands. Installs what is missing from Debian when we are root and may; otherwise
# says how. Without nginx the suite cannot run at all; without Chromium or curl only the
# test that needs it fails (saying why).
set -euo pipefail
missing=()
if [ -z "${NGINX_BINARY:-}" ] && ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  missing+=(nginx)
fi
# Dynamic nginx (NGINX_MODE=dynamic) runs on Debian's Lua module and lua-resty-core.
lua_module=/usr/lib/nginx/modules/ngx_http_lua_module.so
resty_core=/usr/share/lua/5.1/resty/core.lua
if [ -z "${NGINX_BINARY:-}" ] && { [ ! -e "$lua_module" ] || [ ! -e "$resty_core" ]; }; then
  missing+=(libnginx-mod-http-lua lua-resty-core)
fi
if [ -z "${CHROMIUM_BINARY:-}" ] && [ ! -x /usr/bin/chromium ]; then
  missing+=(chromium)
fi
if ! command -v curl >/dev/null 2>&1; then
  missing+=(curl)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "${missing[*]} missing: installing with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
  exit 0
fi
for tool in "${missing[@]}"; do
  case "$tool" in
    nginx) echo "The tests need nginx: install it (Debian: sudo apt-get install -y nginx) or set NGINX_BINARY." >&2 ;;
    libnginx-mod-http-lua)
      echo "The tests run dynamic nginx: install its Lua module" \
        "(Debian: sudo apt-get install -y libnginx-mod-http-lua lua-resty-core)." >&2 ;;
    lua-resty-core) ;;
    curl) echo "The demo test pastes the curl commands the demo prints: install curl (Debian: sudo apt-get install -y curl); that test fails until then." >&2 ;;
    chromium) echo "The status page test needs Chromium: install it (Debian: sudo apt-get install -y chromium) or set CHROMIUM_BINARY; that test fails until then." >&2 ;;
  esac
done
[[ " ${missing[*]} " == *" nginx "* || " ${missing[*]} " == *" libnginx-mod-http-lua "* ]] && exit 1
exit 0
