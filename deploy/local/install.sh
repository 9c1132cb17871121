#!/usr/bin/env bash
# Install what runs and tests need, from PyPI and npm only. Idempotent and quick when done.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.local/bin:$PATH"

if ! command -v uv >/dev/null 2>&1; then
  echo "installing uv"
  python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
fi
uv sync --frozen --quiet

if [ ! -x deploy/local/node_modules/.bin/dynalite ] || [ ! -x deploy/local/node_modules/.bin/s3rver ]; then
  echo "installing the local DynamoDB (dynalite) and S3 (s3rver) servers"
  npm ci --prefix deploy/local --no-audit --no-fund --loglevel=error
fi
