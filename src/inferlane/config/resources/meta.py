"""Building blocks shared by every resource model: the strict base, ObjectMeta, name types.

Models only *describe and check* values; nothing here resolves references or builds runtime
objects (that is phase two, outside ``config``). Checks that span fields raise
``FieldProblems`` with paths relative to the model, so the loader can point each problem at
its own ``file:line`` instead of at the enclosing object.

Simple constrained types (``PortNumber``, ``Hostname``, ``Duration`` ...) follow the upstream
Gateway API validation patterns and carry a ``TypeDoc`` used by the generated reference.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, model_validator

from inferlane.config.paths import Path, format_path


class FieldProblems(ValueError):
    """Cross-field problems found by a model validator, each at a path inside that model."""

    def __init__(self, problems: list[tuple[Path, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{format_path(p) or '.'}: {m}" for p, m in self.problems))


class Problems:
    """Collects every problem of one model validator, then raises them together."""

    def __init__(self) -> None:
        self.items: list[tuple[Path, str]] = []

    def add(self, path: Path, message: str) -> None:
        self.items.append((path, message))

    def raise_if_any(self) -> None:
        if self.items:
            raise FieldProblems(self.items)


class StrictModel(BaseModel):
    """Base of every config model: unknown fields are errors and values are immutable."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


@dataclass(frozen=True, slots=True)
class TypeDoc:
    """How the generated reference names a constrained type."""

    text: str


ANNOTATION_PREFIX: Final = "inferlane.dev/"

# Markers for the reference (``json_schema_extra``): how far inferlane honours a field.
IGNORED: Final[dict[str, JsonValue]] = {"inferlane": "ignored"}
NOT_IMPLEMENTED: Final[dict[str, JsonValue]] = {"inferlane": "not-implemented"}

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_RE = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_LABEL_RE = re.compile(_DNS_LABEL)
_HOSTNAME_RE = re.compile(rf"(\*\.)?{_DNS_LABEL}(\.{_DNS_LABEL})*")
_KIND_RE = re.compile(r"[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?")
_HEADER_NAME_RE = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")
_QUALIFIED_NAME_RE = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DURATION_RE = re.compile(r"([0-9]{1,5}(h|m|s|ms)){1,4}")
_DURATION_PART_RE = re.compile(r"([0-9]{1,5})(ms|h|m|s)")
_DURATION_UNITS: Final = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}

_SUBDOMAIN_RULE = ('use lowercase letters, digits, "-" and "."; start and end with a letter '
                   "or digit")


def _subdomain(value: str) -> str:
    if len(value) > 253 or not _SUBDOMAIN_RE.fullmatch(value):
        raise ValueError(f'"{value}" is not a valid name: {_SUBDOMAIN_RULE} '
                         "(RFC 1123 subdomain, at most 253 characters)")
    return value


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _LABEL_RE.fullmatch(value):
        raise ValueError(f'"{value}" is not a valid namespace: use lowercase letters, digits '
                         'and "-"; start and end with a letter or digit (RFC 1123 label, at '
                         "most 63 characters)")
    return value


def _hostname(wildcard: bool) -> Callable[[str], str]:
    def check(value: str) -> str:
        ok = len(value) <= 253 and _HOSTNAME_RE.fullmatch(value) is not None
        if ok and not wildcard and value.startswith("*."):
            raise ValueError(f'"{value}": a wildcard is not allowed here')
        if not ok or _looks_like_ip(value):
            extra = ', optionally starting with "*."' if wildcard else ""
            raise ValueError(f'"{value}" is not a valid hostname: lowercase DNS name{extra}; '
                             "IP addresses and ports are not allowed")
        return value

    return check


def _looks_like_ip(value: str) -> bool:
    return all(part.isdigit() for part in value.split("."))


def _kind(value: str) -> str:
    if len(value) > 63 or not _KIND_RE.fullmatch(value):
        raise ValueError(f'"{value}" is not a valid kind: letters, digits and "-", starting '
                         "with a letter")
    return value


def _group(value: str) -> str:
    if value and (len(value) > 253 or not _SUBDOMAIN_RE.fullmatch(value)):
        raise ValueError(f'"{value}" is not a valid API group: "" (core) or a lowercase DNS '
                         'name such as "inference.networking.k8s.io"')
    return value


def _header_name(value: str) -> str:
    if len(value) > 256 or not _HEADER_NAME_RE.fullmatch(value):
        raise ValueError(f'"{value}" is not a valid HTTP header name: use letters, digits and '
                         "!#$%&'*+-.^_`|~ (no spaces or colons)")
    return value


def parse_duration(value: str) -> float:
    """A Gateway API duration (GEP-2257, e.g. ``1h30m``, ``500ms``) in seconds."""
    if not _DURATION_RE.fullmatch(value):
        raise ValueError(f'"{value}" is not a Gateway API duration: use one to four '
                         '<number><unit> parts with units h, m, s, ms, e.g. "10s", "500ms", '
                         '"1h30m"')
    return sum(int(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART_RE.findall(value))


def _duration(value: str) -> str:
    parse_duration(value)
    return value


ResourceName = Annotated[str, AfterValidator(_subdomain), TypeDoc("name (RFC 1123 subdomain)")]
Namespace = Annotated[str, AfterValidator(_dns_label), TypeDoc("namespace (RFC 1123 label)")]
SectionName = Annotated[str, AfterValidator(_subdomain),
                        TypeDoc("section name (RFC 1123 subdomain)")]
ObjectName = Annotated[str, Field(min_length=1, max_length=253), TypeDoc("object name")]
Hostname = Annotated[str, AfterValidator(_hostname(True)),
                     TypeDoc('hostname (may start with "*.")')]
PreciseHostname = Annotated[str, AfterValidator(_hostname(False)), TypeDoc("hostname")]
Kind = Annotated[str, AfterValidator(_kind), TypeDoc("kind")]
Group = Annotated[str, AfterValidator(_group), TypeDoc('API group ("" is core)')]
HeaderName = Annotated[str, AfterValidator(_header_name), TypeDoc("HTTP header name")]
PortNumber = Annotated[int, Field(ge=1, le=65535), TypeDoc("port (1-65535)")]
Duration = Annotated[str, AfterValidator(_duration),
                     TypeDoc('duration ("10s", "500ms", "1h30m")')]


def check_label_key(key: str) -> str | None:
    """Why ``key`` is not a valid Kubernetes label/annotation key, or None."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _SUBDOMAIN_RE.fullmatch(prefix)):
        return f'"{key}": the prefix before "/" must be a lowercase DNS name'
    if len(name) > 63 or not _QUALIFIED_NAME_RE.fullmatch(name):
        return (f'"{key}" is not a valid key: at most 63 letters, digits, "-", "_" or ".", '
                'starting and ending with a letter or digit (optionally "prefix/" before)')
    return None


def check_label_value(value: str) -> str | None:
    """Why ``value`` is not a valid Kubernetes label value, or None."""
    if value and (len(value) > 63 or not _QUALIFIED_NAME_RE.fullmatch(value)):
        return (f'"{value}" is not a valid label value: at most 63 letters, digits, "-", "_" '
                'or ".", starting and ending with a letter or digit')
    return None


def check_labels(problems: Problems, path: Path, labels: dict[str, str]) -> None:
    for key, value in labels.items():
        for why in (check_label_key(key), check_label_value(value)):
            if why:
                problems.add((*path, key), why)


def _ignored(alias: str | None = None) -> Any:
    return Field(None, alias=alias, description="Kubernetes bookkeeping.",
                 json_schema_extra=IGNORED, repr=False)


class ObjectMeta(StrictModel):
    """Standard Kubernetes object metadata; ``name`` and ``namespace`` identify a resource."""

    name: ResourceName = Field(description="Name, unique per kind and namespace.")
    namespace: Namespace = Field(
        "default", description="Namespace; references without a namespace stay in this one.")
    labels: dict[str, str] = Field(default_factory=dict,
                                   description="Labels; InferencePool selectors match these.")
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description='Annotations; keys under "inferlane.dev/" configure inferlane extensions.')
    # Fields that `kubectl get -o yaml` emits: accepted so manifests paste cleanly, ignored.
    uid: Any = _ignored()
    resource_version: Any = _ignored("resourceVersion")
    generation: Any = _ignored()
    creation_timestamp: Any = _ignored("creationTimestamp")
    deletion_timestamp: Any = _ignored("deletionTimestamp")
    deletion_grace_period_seconds: Any = _ignored("deletionGracePeriodSeconds")
    owner_references: Any = _ignored("ownerReferences")
    finalizers: Any = _ignored()
    managed_fields: Any = _ignored("managedFields")
    generate_name: Any = _ignored("generateName")
    self_link: Any = _ignored("selfLink")

    @model_validator(mode="after")
    def _check_keys(self) -> ObjectMeta:
        problems = Problems()
        check_labels(problems, ("labels",), self.labels)
        for key in self.annotations:
            why = check_label_key(key)
            if why:
                problems.add(("annotations", key), why)
        problems.raise_if_any()
        return self


class LocalObjectReference(StrictModel):
    """A reference to an object in the referrer's namespace."""

    group: Group = Field(description="API group of the referent.")
    kind: Kind = Field(description="Kind of the referent.")
    name: ObjectName = Field(description="Name of the referent.")


class Resource(StrictModel):
    """Fields common to every kind: ``apiVersion``, ``kind``, ``metadata``, ``status``."""

    api_version: str = Field(alias="apiVersion", description="API group and version.")
    kind: str = Field(description="Resource kind.")
    metadata: ObjectMeta = Field(description="Name, namespace, labels and annotations.")
    status: dict[str, Any] | None = Field(
        None, description="Written by Kubernetes controllers.", json_schema_extra=IGNORED,
        repr=False)

    # "inferlane.dev/..." annotations this kind understands; other keys there get a warning.
    known_annotations: ClassVar[frozenset[str]] = frozenset()

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def key(self) -> tuple[str, str, str]:
        """``(kind, namespace, name)``: unique within one config."""
        return (self.kind, self.metadata.namespace, self.metadata.name)

