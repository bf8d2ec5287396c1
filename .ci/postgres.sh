#!/usr/bin/env bash
# A local PostgreSQL for the review store's tests: installed from Debian's packages when
# missing and this runs as root (as CI does), started as the `postgres` user (PostgreSQL
# refuses to run as root), with a test role and database. Prints the SQLAlchemy URL.
# Without root and without PostgreSQL it says what to install (or set EXPORTGUARD_TEST_PG_URL).
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; } >&2
  else
    echo "PostgreSQL is not installed: install Debian's 'postgresql' package (sudo apt-get install postgresql)," \
         "or set EXPORTGUARD_TEST_PG_URL=postgresql+psycopg://user:password@host/db to a database the tests may reset" >&2
    exit 1
  fi
fi
ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$ver main"; then
  pg_createcluster "$ver" main >&2
fi
if ! pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $4}' | grep -qx online; then
  pg_ctlcluster "$ver" main start >&2
fi
port=$(pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $3}')
psql_pg() { su postgres -c "psql -p $port -v ON_ERROR_STOP=1 -tAc \"$1\""; }
psql_pg "SELECT 1 FROM pg_roles WHERE rolname='exportguard_test'" | grep -q 1 \
  || psql_pg "CREATE ROLE exportguard_test LOGIN PASSWORD 'exportguard-test'" >&2
psql_pg "SELECT 1 FROM pg_database WHERE datname='exportguard_test'" | grep -q 1 \
  || su postgres -c "createdb -p $port -O exportguard_test exportguard_test" >&2
echo "postgresql+psycopg://exportguard_test:exportguard-test@127.0.0.1:$port/exportguard_test"
