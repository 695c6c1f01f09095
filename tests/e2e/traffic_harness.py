"""Config builders and a plain HTTP client for the traffic-management end-to-end tests
(``test_fallback.py``, ``test_splits_and_mirrors.py``): Providers backed by the fake providers,
HTTPRoutes with arbitrary backendRefs and rule fields, TrafficPolicies, and a chat request that
returns status, headers and body whatever the status (the SDK raises on errors and hides
headers), so a test can read ``x-inferlane-backend`` and ``x-inferlane-attempts``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .conftest import GATEWAY_NAME, MODEL_HEADER, GatewayProcess, http_get
from .provider_harness import FakeProvider

BACKEND_HEADER = "x-inferlane-backend"
ATTEMPTS_HEADER = "x-inferlane-attempts"
ENDPOINT_HEADER = "x-inferlane-endpoint"
NAMESPACE = "default"
PROVIDER_KEY = "sk-e2e-traffic-0123456789abcdef"


def pool_label(name: str) -> str:
    """How metrics and ``x-inferlane-backend`` name an InferencePool."""
    return f"pool/{NAMESPACE}/{name}"


def provider_label(name: str) -> str:
    return f"provider/{NAMESPACE}/{name}"


def route_label(name: str) -> str:
    """How metrics name an HTTPRoute rule without a name."""
    return f"{NAMESPACE}/{name}"


# -- config documents ---------------------------------------------------------------------------


def key_file(directory: Path) -> Path:
    """The providers' API key as a mounted-Secret-like file (``credentials.fromFile``)."""
    path = directory / "provider.key"
    path.write_text(f"{PROVIDER_KEY}\n", encoding="utf-8")
    return path


def provider_doc(name: str, fake: FakeProvider, credentials: Path,
                 **spec: Any) -> dict[str, Any]:
    """An ``openai`` Provider sending to ``fake``; ``spec`` adds fields (contextWindow, ...)."""
    return {
        "apiVersion": "inferlane.dev/v1alpha1",
        "kind": "Provider",
        "metadata": {"name": name},
        "spec": {"type": "openai", "baseURL": fake.openai_base_url,
                 "credentials": {"fromFile": str(credentials)}, **spec},
    }


def pool_backend(name: str, weight: int | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"group": "inference.networking.k8s.io", "kind": "InferencePool",
                           "name": name}
    if weight is not None:
        ref["weight"] = weight
    return ref


def provider_backend(name: str, weight: int | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"group": "inferlane.dev", "kind": "Provider", "name": name}
    if weight is not None:
        ref["weight"] = weight
    return ref


def route(name: str, model: str, backends: Sequence[Mapping[str, Any]],
          **rule: Any) -> dict[str, Any]:
    """An HTTPRoute with one rule for requests naming ``model``; ``rule`` adds rule fields
    (retry, timeouts, sessionPersistence, filters)."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {"parentRefs": [{"name": GATEWAY_NAME}], "rules": [{
            "matches": [{"headers": [{"name": MODEL_HEADER, "type": "Exact", "value": model}]}],
            "backendRefs": [dict(b) for b in backends],
            **rule,
        }]},
    }


def traffic_policy(name: str, route_name: str, **spec: Any) -> dict[str, Any]:
    """A TrafficPolicy for the whole HTTPRoute ``route_name``; ``spec`` holds fallback, retry,
    cooldown and mirror."""
    return {
        "apiVersion": "inferlane.dev/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": name},
        "spec": {"targetRefs": [{"kind": "HTTPRoute", "name": route_name}], **spec},
    }


def fallback_to(*backends: Mapping[str, Any], on: Sequence[str] | None = None
                ) -> dict[str, Any]:
    """A TrafficPolicy ``fallback`` (``weight`` is not a field of its references)."""
    refs = [{k: v for k, v in b.items() if k != "weight"} for b in backends]
    return {"backendRefs": refs} if on is None else {"backendRefs": refs, "on": list(on)}


def mirror_filter(backend: Mapping[str, Any], *, percent: int | None = None) -> dict[str, Any]:
    """A RequestMirror filter copying ``percent`` (default: every) request to ``backend``."""
    mirror: dict[str, Any] = {"backendRef": {k: v for k, v in backend.items() if k != "weight"}}
    if percent is not None:
        mirror["percent"] = percent
    return {"type": "RequestMirror", "requestMirror": mirror}


# A budget that never refuses within a test: the budget has its own test.
GENEROUS_RETRY = {"budget": {"percent": 100, "minRetries": 1000}}


# -- requests ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]  # lower-cased names
    body: bytes

    @property
    def backend(self) -> str | None:
        return self.headers.get(BACKEND_HEADER)

    @property
    def attempts(self) -> int:
        return int(self.headers[ATTEMPTS_HEADER])

    @property
    def endpoint(self) -> str | None:
        return self.headers.get(ENDPOINT_HEADER)

    def json(self) -> Any:
        return json.loads(self.body)

    def text(self) -> str:
        """The completion's text (non-streamed 200 answers)."""
        content: str = self.json()["choices"][0]["message"]["content"]
        return content

    def describe(self) -> str:
        return f"{self.status} {dict(self.headers)} {self.body[:500]!r}"


def chat_body(model: str, content: str, max_tokens: int, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": content}],
                            "max_tokens": max_tokens}
    if stream:
        body["stream"] = True
    return body


def post_chat(gateway: GatewayProcess, model: str, *, content: str = "hi", max_tokens: int = 16,
              stream: bool = False, headers: Mapping[str, str] | None = None,
              timeout: float = 30.0) -> Reply:
    """One chat completion through the gateway, whatever its status."""
    request = urllib.request.Request(
        f"{gateway.api_base}/chat/completions",
        data=json.dumps(chat_body(model, content, max_tokens, stream)).encode(),
        headers={"content-type": "application/json", **(headers or {})}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(int(response.status),
                         {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Reply(int(error.code), {k.lower(): v for k, v in error.headers.items()},
                         error.read())


def sse_data(body: bytes) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    return [line[len("data:"):].strip() for line in body.decode().splitlines()
            if line.startswith("data:")]


def admin_json(gateway: GatewayProcess, path: str) -> Any:
    status, body = http_get(f"{gateway.base_url}{path}")
    assert status == 200, f"GET {path} answered {status}\n{gateway.describe()}"
    return json.loads(body)
