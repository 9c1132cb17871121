#!/usr/bin/env bash
# PostgreSQL and RabbitMQ run on every machine of this kind; start one that has stopped.
set -euo pipefail

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! answers 5432 && command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
fi
if ! answers 5672 && command -v rabbitmq-server >/dev/null 2>&1; then
  echo "starting RabbitMQ"
  rabbitmq-server -detached
  for _ in $(seq 60); do answers 5672 && break; sleep 1; done
fi
answers 5432 || { echo "PostgreSQL does not answer on 127.0.0.1:5432 (set TEST_POSTGRES_URL)"; exit 1; }
answers 5672 || { echo "RabbitMQ does not answer on 127.0.0.1:5672 (set TEST_RABBITMQ_URL)"; exit 1; }
