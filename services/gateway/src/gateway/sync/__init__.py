"""Batch sync control: start a run (row + command in one transaction), read its status."""
