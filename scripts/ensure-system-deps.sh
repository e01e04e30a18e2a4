#!/usr/bin/env bash
# Installs the system packages the test suite needs when they are missing: PostgreSQL (the
# suite starts its own throwaway cluster), PgBouncer (the pooler test), Chromium (the
# status page test), Prometheus (its `promtool` checks a real scrape and the README's alert
# rules) and Node.js (the suite runs examples/cron-logger.mjs against a real server). Only apt-get; nothing is downloaded from elsewhere.
set -euo pipefail

need=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
if ! command -v initdb >/dev/null 2>&1 && [ -z "$pg_bin" ]; then need+=(postgresql); fi
if ! command -v pgbouncer >/dev/null 2>&1; then need+=(pgbouncer); fi
if ! command -v chromium >/dev/null 2>&1; then need+=(chromium); fi
if ! command -v promtool >/dev/null 2>&1; then need+=(prometheus); fi
if ! command -v node >/dev/null 2>&1; then need+=(nodejs); fi

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != "0" ]; then
    echo "missing system packages: ${need[*]} (run as root, or install them with apt-get)" >&2
    exit 1
  fi
  echo "installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The suite runs its throwaway clusters as the `postgres` OS user (PostgreSQL refuses root);
# the Debian package creates it, a machine with the server binaries but not the package may not.
if [ "$(id -u)" = "0" ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi
# Debian's postgresql package starts a cluster of its own; the suite uses its own, so leave
# whatever runs alone.
