"""Filters: drop candidates that must not get the request (never all of them)."""
