#!/bin/bash
# One-shot Airflow initialisation (compose service airflow-init). Idempotent.
#  1. check the platform settings (pipelines.ops.deploy.DeploymentSettings; prints no secret),
#  2. migrate the metadata database,
#  3. write the SimpleAuthManager password file (mode 0600) from AIRFLOW_ADMIN_PASSWORD,
#  4. create/update the `gpu` pool (slots = GPUs across the gpu workers).
# Connections are not stored in the DB: AIRFLOW_CONN_* environment variables define them.
set -euo pipefail
: "${AIRFLOW_ADMIN_USER:?}" "${AIRFLOW_ADMIN_PASSWORD:?}" "${AIRFLOW_GPU_POOL_SLOTS:?}"

# exit 3: valid, but secrets this job does not receive are missing (they go only to the services using them)
python -m pipelines.ops.deploy check || [ $? -eq 3 ]
airflow db migrate
python - <<'PY'
import json, os
path = "/opt/airflow/auth/passwords.json"
tmp = path + ".tmp"
fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as fh:
    json.dump({os.environ["AIRFLOW_ADMIN_USER"]: os.environ["AIRFLOW_ADMIN_PASSWORD"]}, fh)
os.replace(tmp, path)
PY
airflow pools set gpu "$AIRFLOW_GPU_POOL_SLOTS" "GPU stages (slots = GPUs across gpu workers)"
echo "airflow-init: done"
