"""inferlane: a model-aware, health-aware gateway for LLM inference."""

__version__ = "0.1.0"
