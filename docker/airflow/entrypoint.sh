#!/usr/bin/env bash
# The Airflow image's entry point: `airflow <args>` (scheduler, api-server, dag-processor,
# triggerer, db migrate, ...), or the program named first when it is one (bash, python, ecdctr),
# as the public Airflow image does for the official chart's containers.
set -euo pipefail
if [ "$#" -gt 0 ] && [ "$1" != airflow ] && command -v -- "$1" >/dev/null 2>&1; then
  exec "$@"
fi
[ "${1:-}" = airflow ] && shift
exec airflow "$@"
