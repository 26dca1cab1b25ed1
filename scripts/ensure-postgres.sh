#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers at 127.0.0.1:5432 for user `postgres`
# without a password (what the tests expect; override the URL they use with
# REDRIVE_TEST_POSTGRES_URL). Installs Debian's package and starts its cluster
# if needed (needs root); does nothing when the server already answers.
set -euo pipefail
host=127.0.0.1 port=5432
answers() { PGCONNECT_TIMEOUT=3 psql -h "$host" -p "$port" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; }

if command -v psql >/dev/null && answers; then
  echo "PostgreSQL answers at $host:$port"; exit 0
fi
if ! command -v pg_ctlcluster >/dev/null; then
  echo "installing PostgreSQL (Debian package)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version="$(ls /etc/postgresql | sort -V | tail -n1)"
hba="/etc/postgresql/$version/main/pg_hba.conf"
# Trust on loopback for the tests (a CI machine only; never do this on a shared host).
if ! grep -Eq '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
  sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
fi
pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || pg_ctlcluster --skip-systemctl-redirect "$version" main reload
for _ in $(seq 1 60); do
  if answers; then echo "PostgreSQL $version started at $host:$port"; exit 0; fi
  sleep 0.5
done
echo "PostgreSQL did not answer at $host:$port within 30 s" >&2
exit 1
