#!/usr/bin/env bash
# Pre-release only: rewrite the single initial Alembic revision from the models.
# Once a release ships, schema changes become new revisions instead.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rm -f storage/migrations/versions/0001_initial.py
python - "$tmp" <<'PY'
import sys
from alembic import command
from storage.db import alembic_config
url = f"sqlite:///{sys.argv[1]}/empty.db"
command.revision(alembic_config(url), message="initial schema", autogenerate=True, rev_id="0001")
PY
mv storage/migrations/versions/0001_initial_schema.py storage/migrations/versions/0001_initial.py
rm -rf "$tmp"
echo "wrote storage/migrations/versions/0001_initial.py"
