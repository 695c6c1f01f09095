"""Providers: model backends that do not speak the client's API, and the translation to reach them.

A route may send OpenAI-API clients to a hosted provider with its own API (Anthropic Messages),
or Anthropic-API clients to an OpenAI-style pool. ``translate`` holds the pure schema
translation between the two (dicts in, dicts and bytes out); the provider adapters that do the
HTTP calls sit around it.
"""
