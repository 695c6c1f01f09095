"""``InferenceProber``: ``inference`` monitors, a tiny real chat completion over aiohttp.

Each try POSTs ``{model, messages: [{role: user, content: prompt}], max_tokens, stream: false}``
to the check's path over plain HTTP and judges the answer with ``checks.inference_outcome``
(status 200, ``choices[0].message.content``, expected text, latency threshold). The model is
the check's, else the endpoint's first served model (``ProbeTarget.model``); with neither
there is nothing to ask and the probe fails without a request.
"""

from __future__ import annotations

import time

import aiohttp
import orjson

from inferlane.health.monitors import InferenceCheck, MonitorSpec, MonitorType, ProbeTarget
from inferlane.health.probes.checks import (
    BODY_LIMIT,
    describe_os_error,
    inference_outcome,
    probe_url,
)
from inferlane.health.probes.session import SessionHolder, describe_client_error, read_bounded
from inferlane.health.probes.tries import Attempt, run_tries
from inferlane.health.verdicts import ProbeResult

_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def chat_request(check: InferenceCheck, model: str) -> bytes:
    """The body of the probe's chat completion."""
    return orjson.dumps({
        "model": model,
        "messages": [{"role": "user", "content": check.prompt}],
        "max_tokens": check.max_tokens,
        "stream": False,
    })


class InferenceProber:
    """Probes ``inference`` monitors over one shared session (``close()`` it)."""

    def __init__(self, *, limit: int = 256, limit_per_host: int = 8) -> None:
        self._sessions = SessionHolder(limit=limit, limit_per_host=limit_per_host)

    async def probe(self, monitor: MonitorSpec, target: ProbeTarget) -> ProbeResult:
        check = monitor.inference
        if check is None or monitor.type is not MonitorType.INFERENCE:
            raise ValueError(f"monitor {monitor.key} is a {monitor.type} monitor, not inference")
        model = check.model or target.model
        if not model:
            return ProbeResult(ok=False, at=time.monotonic(), reason=(
                f"no model to ask: monitor {monitor.key} names none and endpoint "
                f"{target.endpoint} lists none; set the monitor's model"))
        url = probe_url("http", target.host, target.port, check.path)
        body = chat_request(check, model)
        return await run_tries(monitor, lambda: self._try(url, body, check))

    async def close(self) -> None:
        await self._sessions.close()

    async def _try(self, url: str, body: bytes, check: InferenceCheck) -> Attempt:
        session = self._sessions.get()
        started = time.monotonic()
        try:
            async with session.post(url, data=body, headers=_JSON_HEADERS,
                                    allow_redirects=False) as response:
                data, truncated = await read_bounded(response.content, BODY_LIMIT)
                elapsed = time.monotonic() - started
                outcome = inference_outcome(response.status, data, elapsed, check,
                                            truncated=truncated)
        except aiohttp.ClientError as error:
            reason, answered = describe_client_error(error)
            return Attempt(False, reason, time.monotonic() - started if answered else None)
        except OSError as error:  # raised by the socket layer without aiohttp's wrapper
            return Attempt(False, describe_os_error(error), None)
        return Attempt(outcome.ok, outcome.reason, elapsed)
