"""Deals: the list, one deal with its messages, read and reply commands."""
