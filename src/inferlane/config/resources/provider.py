"""The ``Provider`` kind (inferlane.dev/v1alpha1, our extension): a hosted or external model API.

An HTTPRoute names a Provider as a backendRef (``group: inferlane.dev, kind: Provider``) next
to InferencePools, in a weighted split, a RequestMirror filter or a TrafficPolicy's fallback
chain. ``type`` picks the wire dialect and credential header:

==================== ============================ =========================================
type                 requests go to               credential header
==================== ============================ =========================================
openai               ``{baseURL}/chat/completions``  ``Authorization: Bearer``
openai-compatible    same (vLLM, SGLang, Ollama…)  ``Authorization: Bearer`` (optional)
azure-openai         ``{baseURL}/openai/deployments/{deployment}/…?api-version=``  ``api-key``
anthropic            ``{baseURL}/v1/messages``      ``x-api-key`` + ``anthropic-version``
==================== ============================ =========================================

Credentials never appear in the YAML: ``credentials.fromEnv`` names an environment variable and
``credentials.fromFile`` a file (a mounted Kubernetes Secret); both are read when the config is
loaded or reloaded. TLS certificates are verified unless ``tls.insecureSkipVerify`` says not to.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from inferlane.config.resources.filters import HTTPHeader
from inferlane.config.resources.meta import Duration, Problems, Resource, StrictModel

ProviderType = Literal["openai", "azure-openai", "anthropic", "openai-compatible"]

DEFAULT_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}
# Headers the provider adapter owns; setting them in ``headers`` would fight it.
RESERVED_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "anthropic-version",
                              "host", "content-length", "content-type"})


class SecretSource(StrictModel):
    """Where a credential comes from; exactly one of the two."""

    from_env: str | None = Field(None, alias="fromEnv", min_length=1, max_length=256,
                                 pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                 description="Environment variable holding the key.")
    from_file: str | None = Field(None, alias="fromFile", min_length=1,
                                  description="File holding the key (surrounding whitespace "
                                              "is stripped), e.g. a mounted Secret.")

    @model_validator(mode="after")
    def _check(self) -> SecretSource:
        problems = Problems()
        if (self.from_env is None) == (self.from_file is None):
            problems.add((), "set exactly one of fromEnv or fromFile")
        problems.raise_if_any()
        return self


class ProviderTLS(StrictModel):
    """Upstream TLS (https base URLs)."""

    ca_file: str | None = Field(None, alias="caFile", min_length=1,
                                description="PEM bundle of CAs to trust instead of the system's.")
    insecure_skip_verify: bool = Field(
        False, alias="insecureSkipVerify",
        description="Do not verify the server certificate (logged as a warning; tests only).")


class ProviderTimeouts(StrictModel):
    """Time limits of one attempt to this provider."""

    connect: Duration = Field("10s", description="TCP + TLS connect.")
    request: Duration | None = Field(
        None, description="Whole attempt; the route's timeouts also apply (the shorter wins).")


class AzureSettings(StrictModel):
    """Azure OpenAI deployment addressing."""

    api_version: str = Field(alias="apiVersion", min_length=1, max_length=64,
                             pattern=r"^[A-Za-z0-9.\-]+$",
                             description='The api-version query parameter, e.g. "2024-10-21".')
    deployment: str | None = Field(
        None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._\-]+$",
        description="Deployment name; default: the model name sent (after modelNameOverride).")


class AnthropicSettings(StrictModel):
    """Anthropic Messages API settings."""

    version: str = Field("2023-06-01", min_length=1, max_length=32,
                         pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                         description="The anthropic-version header. From 2026-10-21 on, "
                                     "temperature/top_p/top_k are refused with a 400.")
    default_max_tokens: int = Field(4096, alias="defaultMaxTokens", ge=1,
                                    description="max_tokens sent when an OpenAI client sets "
                                                "none (Anthropic requires it).")


class ProviderSpec(StrictModel):
    """Dialect, address, credentials and limits of one provider."""

    type: ProviderType = Field(description="openai, azure-openai, anthropic or "
                                           "openai-compatible.")
    base_url: str | None = Field(
        None, alias="baseURL",
        description="http(s) URL the API paths are appended to. Defaults: openai "
                    "https://api.openai.com/v1, anthropic https://api.anthropic.com; required "
                    "for azure-openai (https://NAME.openai.azure.com) and openai-compatible "
                    "(e.g. http://10.0.0.7:8000/v1).")
    credentials: SecretSource | None = Field(
        None, description="The API key; required except for openai-compatible.")
    model_name_override: str | None = Field(
        None, alias="modelNameOverride", min_length=1, max_length=256,
        description="Model name sent to this provider instead of the client's.")
    context_window: int | None = Field(
        None, alias="contextWindow", ge=1,
        description="Tokens the model accepts (prompt + max_tokens). A request estimated to "
                    "exceed it skips this provider (fallback reason context-window-exceeded).")
    headers: list[HTTPHeader] = Field(default_factory=list, max_length=16,
                                      description="Extra request headers (not credentials).")
    timeouts: ProviderTimeouts = Field(default_factory=ProviderTimeouts,
                                       description="Connect and attempt limits.")
    tls: ProviderTLS = Field(default_factory=ProviderTLS, description="Certificate checks.")
    azure: AzureSettings | None = Field(None, description="Required for azure-openai.")
    anthropic: AnthropicSettings | None = Field(None, description="Only for anthropic.")

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f'"{value}" is not an http:// or https:// URL with a host')
        if parts.username or parts.password:
            raise ValueError("the URL carries credentials: put the key in credentials.fromEnv "
                             "or credentials.fromFile")
        if parts.query or parts.fragment:
            raise ValueError("the URL must not have a query or fragment")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f'"{value}" has an invalid port') from None
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check(self) -> ProviderSpec:
        problems = Problems()
        if self.base_url is None and self.type not in DEFAULT_BASE_URLS:
            problems.add(("baseURL",), f"is required for type {self.type}")
        if self.credentials is None and self.type != "openai-compatible":
            problems.add(("credentials",), f"type {self.type} needs an API key: set "
                                           "credentials.fromEnv or credentials.fromFile")
        if self.type == "azure-openai" and self.azure is None:
            problems.add(("azure",), "is required for type azure-openai (azure.apiVersion)")
        if self.type != "azure-openai" and self.azure is not None:
            problems.add(("azure",), "only applies to type azure-openai")
        if self.type != "anthropic" and self.anthropic is not None:
            problems.add(("anthropic",), "only applies to type anthropic")
        for i, header in enumerate(self.headers):
            if header.name.lower() in RESERVED_HEADERS:
                problems.add(("headers", i, "name"), f'"{header.name}" is set by the provider '
                                                     "adapter; credentials belong in "
                                                     "credentials")
        problems.raise_if_any()
        return self

    @property
    def url(self) -> str:
        """The base URL, with the type's default applied."""
        return self.base_url or DEFAULT_BASE_URLS[self.type]


class Provider(Resource):
    """A hosted or external model API a route can send requests to."""

    api_version: Literal["inferlane.dev/v1alpha1"] = Field(
        alias="apiVersion", description="API group and version.")
    kind: Literal["Provider"] = Field(description="Resource kind.")
    spec: ProviderSpec = Field(description="Dialect, address and credentials.")
