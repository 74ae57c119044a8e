"""The contract, its CRD and its Python validator agree with each other and with the committed copies."""

from __future__ import annotations

import pytest
import yaml

from stemgen_api import contract as c
from stemgen_api.crd import CRD_COPIES, build_crd, render_crd
from stemgen_api.crd import main as crd_main
from stemgen_api.schema import spec_schema
from stemgen_api.validation import SpecError, require_valid, validate_spec
from tests.invalid_specs import INVALID_SPECS, VALID_SPEC


def test_committed_crd_copies_match_the_contract() -> None:
    assert crd_main(["--check"]) == 0, "run `python -m stemgen_api.crd` to regenerate the CRD copies"
    texts = {path.read_text() for path in CRD_COPIES}
    assert texts == {render_crd()}


def test_crd_names_come_from_the_contract() -> None:
    crd = yaml.safe_load(render_crd())
    assert crd["metadata"]["name"] == f"{c.PLURAL}.{c.GROUP}"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (c.KIND, c.PLURAL, list(c.SHORT_NAMES))
    version = crd["spec"]["versions"][0]
    assert version["name"] == c.VERSION and version["subresources"] == {"status": {}}
    columns = [column["name"] for column in version["additionalPrinterColumns"]]
    assert {"Phase", "Stems", "Progress", "Age"} <= set(columns)
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["phase"]["enum"] == [p.value for p in c.Phase]


def test_every_spec_field_in_the_design_is_in_the_schema() -> None:
    fields = set(spec_schema()["properties"])
    assert {"requestId", "audioFileId", "stems", "prompt", "style", "bpm", "key", "durationSeconds", "model",
            "device", "generation", "output", "callback", "timeoutSeconds", "retries", "ttlSecondsAfterFinished",
            "queueName", "cancel"} <= fields
    for name, schema in spec_schema()["properties"].items():
        assert schema.get("description"), f"spec.{name} has no description"


def test_valid_spec_gets_the_schema_defaults() -> None:
    spec = require_valid(VALID_SPEC)
    assert spec["model"] == c.DEFAULT_MODEL
    assert spec["device"] == "auto"
    assert spec["output"] == {"container": c.DEFAULT_CONTAINER, "prefix": "", "format": "wav"}
    assert spec["retries"] == c.DEFAULT_RETRIES


@pytest.mark.parametrize(("spec", "field"), [pytest.param(s, f, id=i) for i, s, f in INVALID_SPECS])
def test_python_validator_names_the_field(spec: dict, field: str) -> None:
    errors = validate_spec(spec)
    assert any(error.field == field for error in errors), errors
    with pytest.raises(SpecError, match=field.replace("[", r"\[").replace("]", r"\]")):
        require_valid(spec)


def test_immutability_rule_covers_every_frozen_field() -> None:
    rule = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"][0]["rule"]
    for name in spec_schema()["properties"]:
        assert (f"self.spec.{name} ==" in rule) == (name not in ("cancel", "ttlSecondsAfterFinished")), name


def test_blob_name_layout() -> None:
    assert c.blob_name("", "ns", "req", "drums", "wav") == "ns/req/drums.wav"
    assert c.blob_name("team/a/", "ns", "req", "bass", "flac") == "team/a/ns/req/bass.flac"
