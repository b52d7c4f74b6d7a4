#!/bin/sh
# Entrypoint of the backend image. On ECS the database arrives in parts: LISA_DB_HOST/PORT/NAME as plain
# variables, LISA_DB_USER/LISA_DB_PASSWORD from the RDS-managed Secrets Manager secret. Unless LISA_DATABASE_URL
# is already set, compose it from them (user and password percent-encoded), drop the loose password, and run
# the command (by default `lisa serve`).
set -eu

if [ -z "${LISA_DATABASE_URL:-}" ] && [ -n "${LISA_DB_HOST:-}" ]; then
  LISA_DATABASE_URL=$(python -c '
import os
from urllib.parse import quote

env = os.environ
user = quote(env["LISA_DB_USER"], safe="")
password = quote(env["LISA_DB_PASSWORD"], safe="")
host = env["LISA_DB_HOST"]
port = env.get("LISA_DB_PORT", "5432")
name = quote(env.get("LISA_DB_NAME", "lisa"), safe="")
print(f"postgresql://{user}:{password}@{host}:{port}/{name}")
')
  export LISA_DATABASE_URL
fi
unset LISA_DB_PASSWORD

exec "$@"
