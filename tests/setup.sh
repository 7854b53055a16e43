#!/usr/bin/env bash
# Installs what the tests run besides cargo, where missing: the Python packages the
# interop tests verify signatures with, Go for the Go verification snippet, the openssl
# CLI that makes the TLS tests' certificates, Debian's Chromium and ChromeDriver for
# the browser tests of the admin page, and Debian's PostgreSQL for the store's second
# backend. python3 and node come with the machine. Uses apt-get (as root, or through
# sudo) and pip; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet -r tests/requirements.txt

packages=()
command -v go >/dev/null || packages+=(golang-go)
command -v openssl >/dev/null || packages+=(openssl)
command -v chromium >/dev/null || packages+=(chromium)
command -v chromedriver >/dev/null || packages+=(chromium-driver)
# PostgreSQL for the store's second backend: tests/common/pg.rs starts a throwaway
# cluster from these binaries (/usr/lib/postgresql/<version>/bin); the packaged cluster
# itself is not used.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || packages+=(postgresql)
if [ "${#packages[@]}" -gt 0 ]; then
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    echo "tests/setup.sh: installing ${packages[*]} with apt-get" >&2
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        "${packages[@]}" >/dev/null
fi
