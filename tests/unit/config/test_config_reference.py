"""docs/config-reference.md is exactly what the generator prints, so it cannot drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferlane.config import reference
from inferlane.config.resources import RESOURCE_KINDS

DOC = Path(__file__).resolve().parents[3] / "docs" / "config-reference.md"


def test_reference_doc_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == reference.render_reference(), (
        "docs/config-reference.md is stale: run "
        "`python -m inferlane.config.reference > docs/config-reference.md`")


def test_main_prints_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    reference.main()
    assert capsys.readouterr().out == reference.render_reference()


def test_every_kind_and_field_is_documented() -> None:
    text = reference.render_reference()
    for api_version, kind in RESOURCE_KINDS:
        assert f"### {kind}\n" in text
        assert f"`{api_version}`" in text
    for field in ("`backendRefs`", "`targetPorts`", "`endpointPickerRef`", "`metricsPath`",
                  "`modelRewrite`", "`gatewayClassName`", "`sectionName`"):
        assert field in text
