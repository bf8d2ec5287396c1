#!/usr/bin/env bash
# Debian packages the review workspace's tests need: PostgreSQL (the team database) and
# Chromium (the browser tests; `playwright install` cannot download browsers here).
# Installed when missing and this runs as root (as CI does); otherwise it says what to install.
set -euo pipefail
missing=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
else
  echo "missing Debian packages for the review tests: ${missing[*]}" \
       "(install them: sudo apt-get install ${missing[*]})" >&2
fi
