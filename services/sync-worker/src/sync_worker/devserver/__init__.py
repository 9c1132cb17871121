"""A development stand-in for the external chat API (contract: docs/external-chat-api.yaml).

Seeded, generated data; configurable size, latency and failures. `make run` starts it on
port 8090 so a new user can start a batch sync at once. Production code never imports it.
"""
