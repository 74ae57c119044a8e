"""Settings come from the environment and fail at start, naming the variable."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from stemgen_api import contract as c
from stemgen_operator.settings import SettingsError, load_settings


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch):
    def set_env(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(f"STEMGEN_OPERATOR_{key}", value)
    return set_env


def test_defaults_have_a_cpu_pool_and_no_gpu_pool():
    settings = load_settings()
    assert settings.gpu_pool is None
    assert settings.limits() == {c.Pool.CPU: 2}
    assert settings.runner_command == ["stemgen-runner", "run"]
    assert settings.callback_allow_private is False


def test_pools_and_lists_from_environment(environment):
    environment(
        NAMESPACES="team-a, team-b",
        GPU_POOL=json.dumps({"limit": 4, "nodeSelector": {"agentpool": "gpu"},
                             "tolerations": [{"key": "sku", "operator": "Equal", "value": "gpu",
                                              "effect": "NoSchedule"}],
                             "resources": {"limits": {"memory": "30Gi"}}}),
        CPU_POOL__LIMIT="8",
        RUNNER_COMMAND='["python", "-m", "stemgen_runner.main", "run"]',
        CALLBACK_ALLOW_PRIVATE="true",
        KUEUE_DEFAULT_QUEUE="gpu-queue",
    )
    settings = load_settings()
    assert settings.namespaces == ["team-a", "team-b"]
    assert settings.gpu_pool.limit == 4
    assert settings.gpu_pool.node_selector == {"agentpool": "gpu"}
    assert settings.gpu_pool.resources.limits == {"memory": "30Gi"}
    assert settings.cpu_pool.limit == 8
    assert settings.runner_command[0] == "python"
    assert settings.callback_allow_private is True
    assert settings.kueue_default_queue == "gpu-queue"


@pytest.mark.parametrize(("key", "value", "named"), [
    ("CPU_POOL__LIMIT", "-1", "STEMGEN_OPERATOR_CPU_POOL.limit"),
    ("GPU_POOL", '{"limit": 1, "tolerations": [{"kee": "x"}]}', "STEMGEN_OPERATOR_GPU_POOL.tolerations"),
    ("GPU_POOL", '{"limits": 3}', "STEMGEN_OPERATOR_GPU_POOL.limits"),
    ("RUNNER_IMAGE_PULL_POLICY", "Sometimes", "STEMGEN_OPERATOR_RUNNER_IMAGE_PULL_POLICY"),
    ("RUNNER_COMMAND", "[]", "STEMGEN_OPERATOR_RUNNER_COMMAND"),
    ("RUNNER_ENV", '{"STEMGEN_NAME": "x"}', "STEMGEN_OPERATOR_RUNNER_ENV"),
    ("METRICS_PORT", "70000", "STEMGEN_OPERATOR_METRICS_PORT"),
])
def test_bad_values_name_the_variable(environment, key, value, named):
    environment(**{key: value})
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert named in str(caught.value)


def test_cli_refuses_bad_settings_with_exit_2_and_checks_good_ones():
    env = {"PATH": "/usr/bin:/bin", "STEMGEN_OPERATOR_CPU_POOL__LIMIT": "many"}
    bad = subprocess.run([sys.executable, "-m", "stemgen_operator.main", "--check-settings"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "STEMGEN_OPERATOR_CPU_POOL.limit" in bad.stderr
    good = subprocess.run([sys.executable, "-m", "stemgen_operator.main", "--check-settings", "-n", "x"],
                          env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["namespaces"] == ["x"]


def test_image_pull_secrets_take_helm_shape_or_names(environment):
    environment(IMAGE_PULL_SECRETS='[{"name": "regcred"}, "other"]')
    assert load_settings().image_pull_secrets == ["regcred", "other"]
