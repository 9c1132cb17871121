"""Benchmarks of Chat Sync's hot paths against their raw floors (`python -m bench`)."""
