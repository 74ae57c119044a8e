"""The real API server enforces the StemGeneration contract: schema, CEL rules, printer columns, RBAC."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from stemgen_api import contract as c
from stemgen_api.crd import render_crd
from tests.invalid_specs import INVALID_SPECS, VALID_SPEC

EXAMPLES = sorted((Path(__file__).parents[2] / "manifests" / "examples").glob("*.yaml"))


def _resource(name: str, spec: dict) -> dict:
    return {"apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": {"name": name}, "spec": spec}


def _create(api_client, namespace: str, body: dict) -> dict:
    return client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.PLURAL, body)


def test_api_server_serves_the_generated_crd(control_plane) -> None:
    served = control_plane.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{c.CRD_NAME}")
    generated = yaml.safe_load(render_crd())
    assert served["spec"]["versions"][0]["schema"] == generated["spec"]["versions"][0]["schema"]
    assert served["spec"]["names"]["shortNames"] == list(c.SHORT_NAMES)


def test_valid_request_is_accepted_with_defaults(api_client, namespace) -> None:
    created = _create(api_client, namespace, _resource("ok", VALID_SPEC))
    assert created["spec"]["model"] == c.DEFAULT_MODEL
    assert created["spec"]["output"]["format"] == "wav"
    assert created["spec"]["cancel"] is False


@pytest.mark.parametrize(("spec", "field"), [pytest.param(s, f, id=i) for i, s, f in INVALID_SPECS])
def test_api_server_refuses_invalid_spec_naming_the_field(api_client, namespace, spec, field) -> None:
    with pytest.raises(ApiException) as refused:
        _create(api_client, namespace, _resource("bad", spec))
    assert refused.value.status == 422, refused.value.body
    message = json.loads(refused.value.body)["message"]
    assert f"{field}:" in message or f"{field} " in message, message


def test_spec_is_frozen_once_accepted_except_cancel(api_client, namespace) -> None:
    objects = client.CustomObjectsApi(api_client)
    _create(api_client, namespace, _resource("frozen", VALID_SPEC))
    # Before the operator accepts it, the owner may still edit it.
    objects.patch_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, "frozen", {"spec": {"bpm": 100}})
    objects.patch_namespaced_custom_object_status(c.GROUP, c.VERSION, namespace, c.PLURAL, "frozen",
                                                  {"status": {"phase": c.Phase.QUEUED.value}})
    for change in ({"bpm": 90}, {"stems": ["drums"]}, {"prompt": "other"}, {"generation": {"seed": 7}}):
        with pytest.raises(ApiException) as refused:
            objects.patch_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, "frozen",
                                                   {"spec": change})
        assert refused.value.status == 422
        assert "spec is immutable" in json.loads(refused.value.body)["message"]
    cancelled = objects.patch_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, "frozen",
                                                       {"spec": {"cancel": True}})
    assert cancelled["spec"]["cancel"] is True and cancelled["spec"]["bpm"] == 100


@pytest.mark.skipif(not EXAMPLES, reason="no example manifests yet")
def test_examples_apply_and_print_columns(kubectl, namespace) -> None:
    for example in EXAMPLES:
        kubectl("apply", "-n", namespace, "-f", str(example))
    table = kubectl("get", "sg", "-n", namespace).stdout
    header = table.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "STEMS", "PROGRESS", "AGE"], table
    names = {doc["metadata"]["name"] for path in EXAMPLES for doc in yaml.safe_load_all(path.read_text())
             if doc and doc.get("kind") == c.KIND}
    assert names <= {line.split()[0] for line in table.splitlines()[1:]}
    wide = kubectl("get", "stemgen", "-n", namespace, "-o", "wide").stdout.splitlines()[0].split()
    assert {"STAGE", "POOL", "REASON"} <= set(wide)


def test_rbac_refuses_an_unprivileged_service_account(api_client, namespace, control_plane) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name="nobody")))
    token = core.create_namespaced_service_account_token("nobody", namespace, client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=["https://kubernetes.default.svc.cluster.local"],
                                       expiration_seconds=600))).status.token
    configuration = client.Configuration()
    configuration.host = control_plane.server
    configuration.ssl_ca_cert = control_plane.ca_file
    configuration.api_key = {"authorization": f"Bearer {token}"}
    unprivileged = client.ApiClient(configuration)
    with pytest.raises(ApiException) as refused:
        client.CustomObjectsApi(unprivileged).list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL)
    assert refused.value.status == 403
    assert f"system:serviceaccount:{namespace}:nobody" in json.loads(refused.value.body)["message"]
    # The same identity is authenticated (not anonymous): it may ask who it is.
    review = client.AuthenticationV1Api(unprivileged).create_self_subject_review(
        client.V1SelfSubjectReview(metadata=client.V1ObjectMeta()))
    assert review.status.user_info.username == f"system:serviceaccount:{namespace}:nobody"
