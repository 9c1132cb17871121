#!/usr/bin/env bash
# `make run`: bring up what this machine can (database, management UI, local DynamoDB and S3),
# prepare the stores, then run every process under honcho. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.local/bin:$PATH"

bash deploy/local/write-env.sh
# Export it: botocore reads its credentials from the environment, not from Settings.
set -a; . ./.env; set +a
bash deploy/local/ensure-services.sh
if command -v rabbitmq-plugins >/dev/null 2>&1; then
  rabbitmq-plugins enable --quiet rabbitmq_management >/dev/null || echo "could not enable the RabbitMQ management plugin"
fi

mkdir -p var/dynamodb var/s3 var/log
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! answers 4567; then
  deploy/local/node_modules/.bin/dynalite --host 127.0.0.1 --port 4567 --path var/dynamodb \
    --createTableMs 0 >var/log/dynamodb.log 2>&1 &
  pids+=($!)
fi
if ! answers 4568; then
  deploy/local/node_modules/.bin/s3rver --address 127.0.0.1 --port 4568 --directory var/s3 \
    --silent >var/log/s3.log 2>&1 &
  pids+=($!)
fi
for port in 4567 4568; do for _ in $(seq 100); do answers $port && break; sleep 0.1; done; done

uv run --frozen python deploy/local/prepare.py
token=$(uv run --frozen gateway token 111111111 --admin 2>/dev/null || true)
cat <<INFO

  Chat Sync is starting:
    API            http://127.0.0.1:8000/api/v1/deals/   (docs: http://127.0.0.1:8000/docs)
    Admin UI       http://127.0.0.1:8000/admin/
    Webhook        http://127.0.0.1:8001/telegram/webhook/
    WebSocket      ws://127.0.0.1:8002/ws/chats/<user_id>/?token=<jwt>
    sync-worker    http://127.0.0.1:8003/healthz     avatar-worker http://127.0.0.1:8004/healthz
    External API   http://127.0.0.1:8090/api/v1/chats (development data)
    RabbitMQ UI    http://127.0.0.1:15672/ (guest / guest)
  Development admin token (user 111111111):
    ${token:-run: make token USER_ID=111111111 ADMIN=1}

INFO
uv run --frozen honcho start -f deploy/Procfile -e .env
