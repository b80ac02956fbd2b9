#!/usr/bin/env bash
# Installs what Headwater's demo and tests need, and nothing twice:
#   Debian packages (MariaDB, PostgreSQL, Java 17, Maven) when a binary is missing,
#   a virtualenv in .venv with `pip install -e '.[dev]'` (again only when pyproject.toml changed).
# The Kafka broker's jars are resolved from Maven Central by `cdc dev up` and cached.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

missing=()
need() {  # need BINARY-PATH-OR-NAME PACKAGE
  if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "$1" ]; then missing+=("$2"); fi
}
need mariadbd mariadb-server
need /usr/sbin/mariadbd mariadb-server
need mariadb-install-db mariadb-server
need mariadb mariadb-client
need mariadb-binlog mariadb-client
# mysqlclient (the snapshot reader's driver) has no Linux wheel: it builds against these
need mariadb_config libmariadb-dev
need pkg-config pkg-config
need gcc gcc
# the compiled hot path (native/headwater_native, Rust + PyO3) is built from crates.io by cargo
need cargo cargo
if ! "${PYTHON:-python3}" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then
  missing+=(python3-dev)
fi
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then missing+=(postgresql); fi
need java openjdk-17-jre-headless
need mvn maven
need python3 python3
# the tests open the HTML reports and catalog page in a real headless browser, and check the
# systemd units in docs/deploy with systemd-analyze
need chromium chromium
need systemd-analyze systemd
if [ ${#missing[@]} -gt 0 ]; then
  # unique, in order
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')
  log "installing Debian packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
      log "error: not root and no sudo; install these packages first: ${missing[*]}"; exit 2
    fi
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts a system-wide server on install where it can; ours run privately, so stop those.
  for svc in mariadb postgresql; do
    if command -v service >/dev/null 2>&1; then $SUDO service "$svc" stop >/dev/null 2>&1 || true; fi
  done
else
  log "Debian packages: all present"
fi

PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  log "error: Python 3.11+ is required ($PY is $("$PY" --version 2>&1))"; exit 2
fi
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv
fi
stamp=".venv/.headwater-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing headwater and its dev extras into .venv"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
else
  log "virtualenv: up to date"
fi

# The compiled hot path (native/headwater_native: the envelope's row encoder), built from source with
# maturin (PyPI) and cargo (crates.io); rebuilt only when its sources change. Adds ~30-60 s on 2 cores.
native="native/headwater_native"
nstamp=".venv/.headwater-native-installed"
nwant="$(cat "$native"/Cargo.toml "$native"/Cargo.lock "$native"/pyproject.toml "$native"/*.pyi "$native"/src/*.rs | sha256sum | cut -d' ' -f1)"
if [ ! -f "$nstamp" ] || [ "$(cat "$nstamp")" != "$nwant" ] || ! .venv/bin/python -c 'import headwater_native' 2>/dev/null; then
  log "building the compiled hot path ($native)"
  .venv/bin/pip install -q "./$native"
  echo "$nwant" > "$nstamp"
else
  log "compiled hot path: up to date"
fi
