"""manifests/ is the chart's default rendering, the examples are valid requests, and the chart
README documents every value.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stemgen_api import contract as c
from stemgen_api.crd import CRD_FILENAME, render_crd
from stemgen_api.validation import validate_spec
from stemgen_dev import manifests as m

EXAMPLES_DIR = m.MANIFESTS_DIR / "examples"


@pytest.fixture(scope="module")
def helm() -> Path:
    return m.find_helm()


def test_manifests_equal_the_chart_default_rendering(helm: Path) -> None:
    expected = m.render_manifests(helm)
    assert m.MANIFEST_FILE.read_text() == expected, "stale manifests/stemgen.yaml: run python -m stemgen_dev.manifests"


def test_crd_copies_are_generated_from_the_contract() -> None:
    for path in (m.MANIFESTS_DIR / "crds" / CRD_FILENAME, m.CHART_DIR / "crds" / CRD_FILENAME):
        assert path.read_text() == render_crd(), f"{path} differs: run `python -m stemgen_api.crd`"


def test_plain_manifests_put_the_namespace_first_and_everything_in_it() -> None:
    docs = [d for d in yaml.safe_load_all(m.MANIFEST_FILE.read_text()) if d]
    assert docs[0] == {"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": m.NAMESPACE, "labels": {c.LABEL_PART_OF: c.PART_OF}}}
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for doc in docs:
        if doc["kind"] not in cluster_scoped:
            assert doc["metadata"]["namespace"] == m.NAMESPACE, doc["metadata"]
    kinds = {d["kind"] for d in docs}
    assert {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "Deployment", "ConfigMap",
            "PersistentVolumeClaim"} <= kinds
    assert not any("helm.sh/hook" in d["metadata"].get("annotations", {}) for d in docs)


def _examples() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(EXAMPLES_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((path.name, doc))
    return found


def test_examples_are_valid_and_cover_the_documented_cases() -> None:
    examples = _examples()
    assert len(examples) >= 3
    specs = {}
    for filename, doc in examples:
        assert doc["apiVersion"] == c.API_VERSION and doc["kind"] == c.KIND, filename
        assert "namespace" not in doc["metadata"], f"{filename}: apply with -n, do not hard-code a namespace"
        assert validate_spec(doc["spec"]) == [], filename
        specs[filename] = doc["spec"]
    assert any(set(s) <= {"stems", "prompt", "style", "bpm", "key", "durationSeconds"} for s in specs.values())
    assert any(s.get("device") == "gpu" and len(s["stems"]) == 4 and "callback" in s for s in specs.values())
    assert any(s.get("device") == "cpu" and s.get("output", {}).get("format") == "flac"
               and s["durationSeconds"] > c.MODEL_WINDOW_SECONDS for s in specs.values())


def _value_paths(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Leaf paths of values.yaml; maps and lists of Kubernetes objects are documented as a whole."""
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and not _is_kubernetes_map(key):
            paths += _value_paths(value, path + ".")
        else:
            paths.append(path)
    return paths


def _is_kubernetes_map(key: str) -> bool:
    return key in {"resources", "nodeSelector", "annotations", "labels", "podAnnotations", "podLabels",
                   "affinity", "commonLabels", "env"}


def test_chart_readme_documents_every_value() -> None:
    values = yaml.safe_load((m.CHART_DIR / "values.yaml").read_text())
    readme = (m.CHART_DIR / "README.md").read_text().split("\n## Values\n", 1)[1]
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, flags=re.MULTILINE))
    missing = [path for path in _value_paths(values) if path not in documented]
    assert not missing, f"values missing from charts/stemgen/README.md: {missing}"
    unknown = sorted(documented - set(_value_paths(values)))
    assert not unknown, f"README documents values that do not exist: {unknown}"
