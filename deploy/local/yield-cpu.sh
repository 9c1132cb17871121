#!/bin/sh
# Run a command with less CPU weight than the latency path (webhook → RabbitMQ → WebSocket).
# The workers write what realtime has already shown; on a shared box they fall behind and
# catch up in larger batches rather than delay what an operator is watching.
#
# `nice` alone does not do it where the kernel groups processes by session (autogroup, on in
# Debian's and Ubuntu's kernels): honcho starts each process in a session of its own, and
# CPU is shared between the groups first, so a niced process only yields to its own children.
# The group's own nice value is set as well.
#
# The process itself runs at the lowest priority, 19: on the 2-core development machine the
# webhook → WebSocket p99 at 300/s was 16.9-23.7 ms over eight runs with 19 and 18.9-32.2 ms
# over five with 10 (`bench e2e`, docs/benchmarks.md).
if [ -w /proc/self/autogroup ]; then
  echo 10 2>/dev/null >/proc/self/autogroup || true
fi
exec nice -n 19 "$@"
