#!/usr/bin/env bash
# Install what `python -m benchmarks.compare` needs: the peer packages (the `bench` extra)
# into .venv, and Debian's redis-server and postgresql if missing. Idempotent.
# Usage, from the repository root:  bash benchmarks/setup_peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
if [ ! -x "$PY" ]; then
    echo "setup_peers: no .venv here; create it first (see the main README)" >&2
    exit 1
fi

# The `bench` extra of pyproject.toml. Until it lands there, install the same list directly.
BENCH=(taskiq huey arq saq bullmq procrastinate "psycopg[binary]" matplotlib redis)
if grep -q '^bench *=' pyproject.toml; then
    "$PY" -m pip install --quiet -e '.[bench]'
else
    "$PY" -m pip install --quiet "${BENCH[@]}"
fi

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1
then
    need+=(postgresql)
fi
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup_peers: installing ${need[*]} with apt-get" >&2
    # The harness starts its own servers (temp dir, free port); it never uses or stops
    # the packaged services.
    if ! { $SUDO apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null; }
    then
        echo "setup_peers: apt-get failed; peers needing ${need[*]} will be skipped" >&2
    fi
fi

"$PY" - <<'PYEOF'
import shutil
from importlib.metadata import PackageNotFoundError, version

for d in ("taskiq", "huey", "arq", "saq", "bullmq", "procrastinate", "psycopg", "matplotlib",
          "redis"):
    try:
        print(f"  {d:<14} {version(d)}")
    except PackageNotFoundError:
        print(f"  {d:<14} MISSING")
print(f"  redis-server   {shutil.which('redis-server') or 'MISSING'}")
from benchmarks.peers.servers import Unavailable, _pg_bin

try:
    print(f"  postgresql     {_pg_bin()}")
except Unavailable as exc:
    print(f"  postgresql     MISSING ({exc})")
PYEOF
