"""Simulated vLLM-compatible model servers (``inferlane sim``).

``engine`` is the sans-IO continuous-batching core; ``server`` wraps one engine in an aiohttp app
speaking the OpenAI API and vLLM's metrics; ``fleet`` runs many replicas in one event loop;
``command`` is the CLI. See README.md in this folder for the model and its formulas.
"""
