"""Spec building for the client: keyword → camelCase, validation naming fields, deterministic names."""

from __future__ import annotations

import dataclasses
import re

import pytest

from stemgen_api import contract as c
from stemgen_api.schema import spec_schema
from stemgen_api.validation import SpecError
from stemgen_client.spec import (
    CallbackSpec,
    GenerationParams,
    OutputSpec,
    SecretRef,
    StemGenerationSpec,
    build_manifest,
    build_spec,
    camel,
    name_for_request,
    split_manifest,
)
from tests.invalid_specs import INVALID_SPECS, VALID_SPEC


def test_camel_converts_snake_case_and_keeps_camel_case() -> None:
    assert camel("duration_seconds") == "durationSeconds"
    assert camel("ttl_seconds_after_finished") == "ttlSecondsAfterFinished"
    assert camel("topK") == "topK"
    assert camel("stems") == "stems"


@pytest.mark.parametrize("spec_class,schema", [
    (StemGenerationSpec, spec_schema()),
    (GenerationParams, spec_schema()["properties"]["generation"]),
    (OutputSpec, spec_schema()["properties"]["output"]),
    (CallbackSpec, spec_schema()["properties"]["callback"]),
    (SecretRef, spec_schema()["properties"]["callback"]["properties"]["secretRef"]),
])
def test_spec_dataclasses_cover_exactly_the_contract_fields(spec_class, schema) -> None:
    """The typed spec cannot drift from the contract: same fields, nothing extra or missing."""
    fields = {camel(f.name) for f in dataclasses.fields(spec_class)}
    assert fields == set(schema["properties"])


def test_keywords_become_the_contract_spec() -> None:
    spec = build_spec(stems=["drums", "bass"], duration_seconds=12.5, request_id="order-1",
                      generation={"seed": 3, "top_k": 50}, output={"format": "flac"},
                      callback={"url": "https://example.com/hook", "secret_ref": {"name": "hook"}})
    assert spec == {"stems": ["drums", "bass"], "durationSeconds": 12.5, "requestId": "order-1",
                    "generation": {"seed": 3, "topK": 50}, "output": {"format": "flac"},
                    "callback": {"url": "https://example.com/hook", "secretRef": {"name": "hook"}}}


def test_dataclass_spec_drops_unset_fields_and_keywords_override() -> None:
    typed = StemGenerationSpec(stems=["piano"], bpm=90, generation=GenerationParams(seed=1),
                               callback=CallbackSpec("http://hooks.example/x", SecretRef("s", "k")))
    spec = build_spec(typed, bpm=100)
    assert spec == {"stems": ["piano"], "bpm": 100, "generation": {"seed": 1},
                    "callback": {"url": "http://hooks.example/x", "secretRef": {"name": "s", "key": "k"}}}


def test_comma_separated_stems_are_split() -> None:
    assert build_spec(stems="drums, bass")["stems"] == ["drums", "bass"]


@pytest.mark.parametrize(("spec", "field"), [pytest.param(s, f, id=i) for i, s, f in INVALID_SPECS])
def test_invalid_specs_raise_spec_error_naming_the_field(spec, field) -> None:
    with pytest.raises(SpecError) as raised:
        build_spec(spec)
    assert any(error.field == field or error.field.startswith(field) for error in raised.value.errors), \
        raised.value.errors
    assert field in str(raised.value)


def test_unknown_keyword_is_named_in_camel_case() -> None:
    with pytest.raises(SpecError) as raised:
        build_spec(VALID_SPEC, colour_scheme="red")
    assert [e.field for e in raised.value.errors] == ["spec.colourScheme"]
    assert "unknown field" in str(raised.value)


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as raised:
        build_spec(stems=["drums"], bpm=1000, key="H minor", device="tpu")
    assert {e.field for e in raised.value.errors} == {"spec.bpm", "spec.key", "spec.device"}


def test_names_from_request_ids_are_deterministic_distinct_and_dns_safe() -> None:
    ids = ["order-1", "Order-1", "order:1", "ORDER_1", "x" * 128, "9.9.9", "a"]
    names = [name_for_request(i) for i in ids]
    assert names == [name_for_request(i) for i in ids]
    assert len(set(names)) == len(names)
    for name in names:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
        assert len(name) <= 52


def test_manifest_name_comes_from_name_then_request_id_then_generate_name() -> None:
    spec = build_spec(stems=["drums"], request_id="order:42")
    derived = build_manifest(spec, "music")
    assert derived["metadata"]["name"] == name_for_request("order:42")
    assert derived["metadata"]["labels"][c.LABEL_REQUEST_ID] == c.request_id_label_value("order:42")
    assert derived["apiVersion"] == c.API_VERSION and derived["kind"] == c.KIND
    assert build_manifest(spec, "music", name="mine")["metadata"]["name"] == "mine"
    anonymous = build_manifest(build_spec(stems=["drums"]), "music")
    assert "name" not in anonymous["metadata"] and anonymous["metadata"]["generateName"] == "sg-"
    assert c.LABEL_REQUEST_ID not in anonymous["metadata"]["labels"]


def test_manifest_refuses_a_bad_name() -> None:
    with pytest.raises(SpecError, match=r"metadata\.name"):
        build_manifest(build_spec(stems=["drums"]), "music", name="Not_A_Name")


def test_split_manifest_accepts_a_whole_resource_or_a_bare_spec() -> None:
    metadata, spec = split_manifest({"apiVersion": c.API_VERSION, "kind": c.KIND,
                                     "metadata": {"name": "n"}, "spec": {"stems": ["drums"]}})
    assert metadata == {"name": "n"} and spec == {"stems": ["drums"]}
    assert split_manifest({"stems": ["bass"]}) == ({}, {"stems": ["bass"]})
    with pytest.raises(SpecError, match="kind"):
        split_manifest({"kind": "Pod", "spec": {}})
    with pytest.raises(SpecError, match="spec"):
        split_manifest({"kind": c.KIND})


def test_spec_differences_fill_defaults_and_ignore_cancel() -> None:
    from stemgen_client.spec import spec_differences

    stored = {"stems": ["drums"], "bpm": 120, "model": c.DEFAULT_MODEL, "durationSeconds": 10.0, "cancel": True,
              "output": {"container": "stems", "prefix": "", "format": "wav"}, "prompt": "", "style": "",
              "device": "auto", "priority": 0, "timeoutSeconds": 3600, "retries": 2}
    assert spec_differences({"stems": ["drums"]}, stored) == []
    assert spec_differences({"stems": ["drums"], "bpm": 120, "durationSeconds": 10}, stored) == []
    assert spec_differences({"stems": ["drums", "bass"], "bpm": 90, "output": {"format": "flac"}}, stored) == [
        "spec.bpm", "spec.output.format", "spec.stems"]
    assert spec_differences({"stems": ["drums"], "key": "E minor"}, stored) == ["spec.key"]
