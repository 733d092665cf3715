#!/bin/bash
# First-start initialisation of the PostgreSQL container (docker-entrypoint-initdb.d): one database
# and one owner role each for Airflow's metadata and for Label Studio. Passwords come from the
# environment and are passed as psql variables (quoted by psql, never spliced into SQL text).
# Runs only when the data volume is empty; changing a password later: ALTER ROLE ... (see docs).
set -euo pipefail
: "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD is not set}"
: "${LABEL_STUDIO_DB_PASSWORD:?LABEL_STUDIO_DB_PASSWORD is not set}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v airflow_pw="$AIRFLOW_DB_PASSWORD" -v ls_pw="$LABEL_STUDIO_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_pw';
CREATE DATABASE airflow OWNER airflow ENCODING 'UTF8';
CREATE ROLE labelstudio LOGIN PASSWORD :'ls_pw';
CREATE DATABASE labelstudio OWNER labelstudio ENCODING 'UTF8';
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
REVOKE ALL ON DATABASE labelstudio FROM PUBLIC;
SQL
