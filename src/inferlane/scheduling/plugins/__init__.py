"""Built-in scheduling plugins, one module per plugin (upstream names where one exists).

- ``filter/``: ``saturation-filter`` (stale + over-threshold endpoints), ``stale-filter``;
- ``scorer/``: ``queue-scorer``, ``running-requests-size-scorer``,
  ``kv-cache-utilization-scorer``, ``prefix-cache-scorer``, ``lora-affinity-scorer``,
  ``token-load-scorer``, ``session-affinity-scorer``, ``predicted-latency-scorer``;
- ``picker/``: ``max-score-picker``, ``random-picker``, ``weighted-random-picker``,
  ``least-request-picker`` (power of two choices), ``round-robin-picker``.

Each module's docstring states its formula; ``scheduling.registry`` maps the type names to the
``factory(name, params)`` functions defined here.
"""
