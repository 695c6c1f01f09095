"""A Provider resolved for serving: address, TLS, credential (never printed), dialect settings."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme

from inferlane.config.resources import Provider
from inferlane.providers.runtime import (
    ProviderConfigError,
    ProviderRuntime,
    Secret,
    build_provider,
    read_secret,
    tls_context,
)
from inferlane.routing.backends import provider_ref

KEY = "sk-live-Zx9QvT3kP0aL7mN"
ENV = "INFERLANE_TEST_PROVIDER_KEY"


def provider(spec: dict[str, Any], name: str = "oai", namespace: str = "team") -> Provider:
    return Provider.model_validate({
        "apiVersion": "inferlane.dev/v1alpha1", "kind": "Provider",
        "metadata": {"name": name, "namespace": namespace}, "spec": spec})


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(ENV, KEY)
    return ENV


# -- Secret ------------------------------------------------------------------------------------

def test_secret_never_prints_its_value() -> None:
    secret = Secret(KEY)
    assert secret.reveal() == KEY
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{[secret]}"):
        assert KEY not in shown
        assert shown == "[Secret(***)]" or shown == "Secret(***)"


def test_secret_equality_and_hash() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert hash(Secret("a")) == hash(Secret("a"))
    assert len({Secret("a"), Secret("a"), Secret("b")}) == 2


def test_runtime_repr_and_str_never_show_the_key(key_env: str) -> None:
    runtime = build_provider(provider({"type": "openai", "credentials": {"fromEnv": key_env},
                                       "headers": [{"name": "OpenAI-Organization",
                                                    "value": "org-1"}]}))
    assert runtime.credential == Secret(KEY)
    for shown in (repr(runtime), str(runtime), f"{runtime}", repr([runtime]),
                  repr({"p": runtime})):
        assert KEY not in shown
        assert "Secret(***)" in shown


# -- building ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("spec", "host", "port", "base_path", "https", "address", "host_header"),
    [
        ({"type": "openai"}, "api.openai.com", 443, "/v1", True, "api.openai.com:443",
         "api.openai.com"),
        ({"type": "anthropic"}, "api.anthropic.com", 443, "", True, "api.anthropic.com:443",
         "api.anthropic.com"),
        ({"type": "openai-compatible", "baseURL": "http://10.0.0.7:8000/v1"}, "10.0.0.7", 8000,
         "/v1", False, "10.0.0.7:8000", "10.0.0.7:8000"),
        ({"type": "openai-compatible", "baseURL": "http://vllm.local/"}, "vllm.local", 80, "",
         False, "vllm.local:80", "vllm.local"),
        ({"type": "openai-compatible", "baseURL": "http://vllm.local:443"}, "vllm.local", 443,
         "", False, "vllm.local:443", "vllm.local:443"),
        ({"type": "openai", "baseURL": "https://gw.example.com:80/openai/v1/"},
         "gw.example.com", 80, "/openai/v1", True, "gw.example.com:80", "gw.example.com:80"),
        ({"type": "openai", "baseURL": "https://GW.Example.com:443/v1"}, "gw.example.com", 443,
         "/v1", True, "gw.example.com:443", "gw.example.com"),
        ({"type": "openai-compatible", "baseURL": "https://[::1]:8443/v1"}, "::1", 8443, "/v1",
         True, "[::1]:8443", "[::1]:8443"),
        ({"type": "openai-compatible", "baseURL": "http://[fd00::7]"}, "fd00::7", 80, "",
         False, "[fd00::7]:80", "[fd00::7]"),
        ({"type": "azure-openai", "baseURL": "https://res.openai.azure.com",
          "azure": {"apiVersion": "2024-10-21"}}, "res.openai.azure.com", 443, "", True,
         "res.openai.azure.com:443", "res.openai.azure.com"),
    ],
)
def test_build_address(key_env: str, spec: dict[str, Any], host: str, port: int,
                       base_path: str, https: bool, address: str, host_header: str) -> None:
    if spec["type"] != "openai-compatible":
        spec = {**spec, "credentials": {"fromEnv": key_env}}
    runtime = build_provider(provider(spec))
    assert (runtime.host, runtime.port, runtime.base_path) == (host, port, base_path)
    assert (runtime.tls is not None) is https
    assert runtime.address == address
    assert runtime.host_header == host_header


def test_build_openai_defaults(key_env: str) -> None:
    runtime = build_provider(provider({"type": "openai", "credentials": {"fromEnv": key_env}}))
    assert runtime.key == "team/oai"
    assert runtime.ref == provider_ref("team/oai")
    assert runtime.dialect == "openai"
    assert runtime.model_name_override is None
    assert runtime.context_window is None
    assert runtime.connect_timeout == 10.0
    assert runtime.request_timeout is None
    assert runtime.headers == ()
    assert (runtime.azure_api_version, runtime.azure_deployment) == (None, None)
    assert (runtime.anthropic_version, runtime.anthropic_max_tokens) == ("2023-06-01", 4096)
    assert runtime.sampling_parameters


def test_build_every_setting(key_env: str) -> None:
    runtime = build_provider(provider({
        "type": "anthropic", "credentials": {"fromEnv": key_env},
        "modelNameOverride": "claude-sonnet-4", "contextWindow": 200000,
        "headers": [{"name": "Anthropic-Beta", "value": "tools-2024"},
                    {"name": "X-Team", "value": "Search"}],
        "timeouts": {"connect": "2s", "request": "1m30s"},
        "anthropic": {"version": "2026-10-21", "defaultMaxTokens": 1024},
    }, name="claude"))
    assert runtime.key == "team/claude"
    assert runtime.type == "anthropic"
    assert runtime.dialect == "anthropic"
    assert runtime.model_name_override == "claude-sonnet-4"
    assert runtime.context_window == 200000
    assert runtime.headers == (("anthropic-beta", "tools-2024"), ("x-team", "Search"))
    assert (runtime.connect_timeout, runtime.request_timeout) == (2.0, 90.0)
    assert (runtime.anthropic_version, runtime.anthropic_max_tokens) == ("2026-10-21", 1024)
    assert not runtime.sampling_parameters


def test_build_azure_settings(key_env: str) -> None:
    runtime = build_provider(provider({
        "type": "azure-openai", "baseURL": "https://res.openai.azure.com",
        "credentials": {"fromEnv": key_env},
        "azure": {"apiVersion": "2024-10-21", "deployment": "gpt-4o-prod"}}))
    assert (runtime.azure_api_version, runtime.azure_deployment) == ("2024-10-21", "gpt-4o-prod")


@pytest.mark.parametrize(("request_timeout", "seconds"), [("0s", None), ("250ms", 0.25),
                                                          ("1h", 3600.0)])
def test_build_request_timeout(request_timeout: str, seconds: float | None) -> None:
    runtime = build_provider(provider({"type": "openai-compatible",
                                       "baseURL": "http://h:8000",
                                       "timeouts": {"request": request_timeout}}))
    assert runtime.request_timeout == seconds


def test_build_without_credentials() -> None:
    runtime = build_provider(provider({"type": "openai-compatible",
                                       "baseURL": "http://h:8000/v1"}))
    assert runtime.credential is None


@pytest.mark.parametrize(("version", "allowed"), [("2023-01-01", True), ("2023-06-01", True),
                                                  ("2026-10-20", True), ("2026-10-21", False),
                                                  ("2030-01-01", False)])
def test_sampling_parameters_by_version(version: str, allowed: bool) -> None:
    runtime = ProviderRuntime(key="a/b", type="anthropic", host="h", port=443, base_path="",
                              tls=None, credential=None, anthropic_version=version)
    assert runtime.sampling_parameters is allowed


def test_runtimes_compare_without_their_tls_context(key_env: str) -> None:
    spec = {"type": "openai", "credentials": {"fromEnv": key_env}}
    first, second = build_provider(provider(spec)), build_provider(provider(spec))
    assert first.tls is not second.tls
    assert first == second


# -- credentials -------------------------------------------------------------------------------

def test_read_secret_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, f"  {KEY}\n")
    secret = read_secret(provider({"type": "openai", "credentials": {"fromEnv": ENV}}))
    assert secret == Secret(KEY)


@pytest.mark.parametrize("content", [KEY, f"{KEY}\n", f"\n  {KEY}  \r\n"])
def test_read_secret_from_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "key"
    path.write_text(content, encoding="utf-8")
    secret = read_secret(provider({"type": "openai",
                                   "credentials": {"fromFile": str(path)}}))
    assert secret == Secret(KEY)


def test_read_secret_without_credentials() -> None:
    assert read_secret(provider({"type": "openai-compatible", "baseURL": "http://h"})) is None


@pytest.mark.parametrize("value", [None, ""])
def test_read_secret_env_missing_or_empty(monkeypatch: pytest.MonkeyPatch,
                                          value: str | None) -> None:
    if value is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, value)
    with pytest.raises(ProviderConfigError) as caught:
        read_secret(provider({"type": "openai", "credentials": {"fromEnv": ENV}}))
    error = caught.value
    assert (error.provider, error.field_path) == ("team/oai", "spec.credentials.fromEnv")
    assert str(error) == f"environment variable {ENV} is not set or empty"
    assert isinstance(error, ValueError)


@pytest.mark.parametrize("value", [" ", "\n", " \t\r\n"])
def test_read_secret_env_of_only_whitespace_is_empty(monkeypatch: pytest.MonkeyPatch,
                                                     value: str) -> None:
    monkeypatch.setenv(ENV, value)
    with pytest.raises(ProviderConfigError):
        read_secret(provider({"type": "openai", "credentials": {"fromEnv": ENV}}))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: d / "missing", "No such file or directory"),
        (lambda d: d, "Is a directory"),
        (lambda d: _write(d / "empty", b""), "is empty"),
        (lambda d: _write(d / "blank", b" \n\t\n"), "is empty"),
        (lambda d: _write(d / "binary", b"\xff\xfe\x00key"), "UnicodeDecodeError"),
    ],
    ids=["missing", "directory", "empty", "blank", "not-utf8"],
)
def test_read_secret_file_errors(tmp_path: Path, make: Any, reason: str) -> None:
    path = make(tmp_path)
    with pytest.raises(ProviderConfigError) as caught:
        read_secret(provider({"type": "openai", "credentials": {"fromFile": str(path)}}))
    error = caught.value
    assert error.field_path == "spec.credentials.fromFile"
    assert str(path) in str(error)
    assert reason in str(error)


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def test_build_reports_a_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(ProviderConfigError) as caught:
        build_provider(provider({"type": "anthropic", "credentials": {"fromEnv": ENV}},
                                name="claude"))
    assert caught.value.provider == "team/claude"


# -- TLS ---------------------------------------------------------------------------------------

def test_tls_verifies_by_default(key_env: str) -> None:
    runtime = build_provider(provider({"type": "openai", "credentials": {"fromEnv": key_env}}))
    assert isinstance(runtime.tls, ssl.SSLContext)
    assert runtime.tls.verify_mode is ssl.CERT_REQUIRED
    assert runtime.tls.check_hostname is True


def test_tls_insecure_skip_verify_turns_verification_off() -> None:
    context = tls_context(provider({"type": "openai-compatible",
                                    "baseURL": "https://h:8443",
                                    "tls": {"insecureSkipVerify": True}}))
    assert context.verify_mode is ssl.CERT_NONE
    assert context.check_hostname is False


def test_tls_ca_file_is_the_trust_store(tmp_path: Path) -> None:
    ca = trustme.CA()
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    context = tls_context(provider({"type": "openai-compatible", "baseURL": "https://h:8443",
                                    "tls": {"caFile": str(path)}}))
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    (trusted,) = context.get_ca_certs()
    assert dict(part[0] for part in trusted["subject"])["organizationName"].startswith("trustme")


def handshake(client: ssl.SSLContext, server: ssl.SSLContext, hostname: str) -> None:
    """A TLS handshake over memory buffers (no sockets); raises ssl.SSLError if refused."""
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    tls_client = client.wrap_bio(client_in, client_out, server_hostname=hostname)
    tls_server = server.wrap_bio(server_in, server_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, side in (("client", tls_client), ("server", tls_server)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


@pytest.mark.parametrize(
    ("tls", "hostname", "accepted"),
    [({}, "h.example", False),  # the system store does not know the test CA
     ({"caFile": "CA"}, "h.example", True),
     ({"caFile": "CA"}, "other.example", False),  # the hostname is checked
     ({"insecureSkipVerify": True}, "other.example", True)],
)
def test_tls_handshake(tmp_path: Path, tls: dict[str, Any], hostname: str,
                       accepted: bool) -> None:
    ca = trustme.CA()
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("h.example").configure_cert(server)
    settings = {k: (str(path) if v == "CA" else v) for k, v in tls.items()}
    client = tls_context(provider({"type": "openai-compatible", "baseURL": "https://h.example",
                                   "tls": settings}))
    if accepted:
        handshake(client, server, hostname)
    else:
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(client, server, hostname)


@pytest.mark.parametrize("content", [None, b"not a certificate\n", b""],
                         ids=["missing", "garbage", "empty"])
def test_tls_bad_ca_file(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ProviderConfigError) as caught:
        build_provider(provider({"type": "openai-compatible", "baseURL": "https://h",
                                 "tls": {"caFile": str(path)}}))
    assert caught.value.field_path == "spec.tls.caFile"
    assert str(path) in str(caught.value)


def test_plain_http_has_no_tls_even_with_tls_settings() -> None:
    runtime = build_provider(provider({"type": "openai-compatible", "baseURL": "http://h",
                                       "tls": {"caFile": "/does/not/exist"}}))
    assert runtime.tls is None
