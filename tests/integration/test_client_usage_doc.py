"""The Python example in docs/usage.md runs as written against the real API server, and the
API server's error text quoted there is what it really says."""

from __future__ import annotations

import contextlib
import io
import json
import re
import threading
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from stemgen_api import contract as c
from stemgen_client import StemGenClient
from stemgen_client.spec import name_for_request
from tests.integration.client_helpers import PROGRESSION, StatusPlayer, succeeded

USAGE = (Path(__file__).resolve().parents[2] / "docs" / "usage.md").read_text()


def _python_example() -> str:
    [example] = re.findall(r"```python\n(.*?)```", USAGE, re.DOTALL)
    return example


def test_the_python_example_submits_waits_and_prints_outputs(control_plane, api_client, namespace: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", control_plane.kubeconfig)
    example = _python_example()
    assert 'StemGenClient(namespace="music")' in example
    code = example.replace('namespace="music"', f'namespace="{namespace}"')
    name = name_for_request("order-1234")
    stemgen = StemGenClient(kubeconfig=control_plane.kubeconfig, namespace=namespace)
    outputs = [{"stem": stem, "url": f"https://acct.blob.core.windows.net/stems/{namespace}/{name}/{stem}.wav",
                "container": "stems", "blobName": f"{namespace}/{name}/{stem}.wav", "sha256": stem[0] * 64}
               for stem in ("drums", "bass")]
    printed = io.StringIO()
    errors: list[BaseException] = []

    def run_example() -> None:
        try:
            with contextlib.redirect_stdout(printed):
                exec(compile(code, "docs/usage.md", "exec"), {"__name__": "usage_example"})
        except BaseException as error:
            errors.append(error)

    runner = threading.Thread(target=run_example)
    with StatusPlayer(api_client, namespace, name, [*PROGRESSION, succeeded(outputs)], interval=0.3,
                      start_when=lambda: any(item.name == name for item in stemgen.list())):
        runner.start()
        runner.join(timeout=120)
        assert not runner.is_alive() and not errors, errors
    lines = printed.getvalue().splitlines()
    assert lines[-2:] == [f"drums {outputs[0]['url']} {'d' * 64}", f"bass {outputs[1]['url']} {'b' * 64}"]
    assert "Running generating 70%" in lines and lines[-3] == "Succeeded done 100%"
    created = stemgen.get(name)
    assert created.spec["callback"] == {"url": "https://api.example.com/hooks/stems",
                                        "secretRef": {"name": "stemgen-webhook", "key": "secret"}}
    assert created.labels[c.LABEL_REQUEST_ID] == "order-1234"


def test_the_quoted_api_server_error_is_real(api_client, namespace: str) -> None:
    quoted = re.search(r"`(spec\.bpm: Invalid value: 400: .*?)`", USAGE)
    assert quoted
    with pytest.raises(ApiException) as refused:
        k8s.CustomObjectsApi(api_client).create_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.PLURAL,
            {"apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": {"name": "too-fast"},
             "spec": {"stems": ["drums"], "bpm": 400}})
    assert quoted.group(1) in json.loads(refused.value.body)["message"]
