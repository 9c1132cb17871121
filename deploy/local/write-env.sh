#!/usr/bin/env bash
# Write a development .env with random secrets, once; an existing .env is never touched.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f .env ] && exit 0
rand() { python3 -c "import secrets; print(secrets.token_urlsafe($1))"; }
cat > .env <<ENV
# Development settings written by \`make run\`; see README.md for every variable.
DEBUG=true
POSTGRES_DB=chat_sync
RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672/
AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:4567
AWS_ENDPOINT_URL_S3=http://127.0.0.1:4568
AWS_ACCESS_KEY_ID=S3RVER
AWS_SECRET_ACCESS_KEY=S3RVER
AWS_REGION=us-east-1
TELEGRAM_WEBHOOK_SECRET=$(rand 32)
TELEGRAM_BOT_TOKEN=
EXTERNAL_API_URL=http://127.0.0.1:8090
EXTERNAL_API_TOKEN=$(rand 24)
AUTH_JWT_SECRET=$(rand 48)
ADMIN_USERNAME=admin
ADMIN_PASSWORD=$(rand 12)
ADMIN_SESSION_SECRET=$(rand 48)
AVATAR_URL_ALLOWLIST=127.0.0.1:8090
ENV
echo "wrote .env with random development secrets (ADMIN_PASSWORD is in it)"
