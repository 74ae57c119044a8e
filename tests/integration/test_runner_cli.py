"""`stemgen-runner` as the Job runs it: a separate process, configured only by its environment,
against the real API server, Azurite and an HTTP receiver, with the tiny MusicGen checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys

from stemgen_api import contract as c
from stemgen_api.webhooks import webhook_id

from .conftest import TINY_MODEL
from .runner_audio_checks import assert_stem_blob


def _runner(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stemgen_runner", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_run_generates_uploads_reports_then_calls_back(create_request, read_request, runner_env, azurite,
                                                       callback_receiver) -> None:
    spec = {"stems": ["drums", "bass"], "style": "funk", "bpm": 100, "key": "E minor", "durationSeconds": 1,
            "model": TINY_MODEL, "requestId": "req-cli-1", "audioFileId": "audio-77", "device": "cpu",
            "generation": {"seed": 1234}, "output": {"container": "stems", "prefix": "tests"},
            "callback": {"url": callback_receiver.url, "secretRef": {"name": "hook-secret"}}}
    created = create_request("cli-run", spec)

    result = _runner(runner_env("cli-run", STEMGEN_CALLBACK_SECRET=callback_receiver.secret))
    assert result.returncode == c.ExitCode.SUCCESS, result.stderr[-3000:]

    status = read_request("cli-run")["status"]
    assert status["phase"] == c.Phase.SUCCEEDED.value
    assert status["requestId"] == "req-cli-1" and status["device"].startswith("cpu")
    assert status["progress"] == {"stage": "done", "percent": 100}
    assert {"modelLoadSeconds", "generateSeconds", "postProcessSeconds", "uploadSeconds", "totalSeconds"} \
        <= set(status["timings"])
    assert {cond["type"]: cond["status"] for cond in status["conditions"]}["Succeeded"] == "True"
    assert [output["stem"] for output in status["outputs"]] == ["drums", "bass"]
    namespace = created["metadata"]["namespace"]
    for output in status["outputs"]:
        assert output["blobName"] == f"tests/{namespace}/cli-run/{output['stem']}.wav"
        assert output["url"].endswith(f"/stems/{output['blobName']}")
        assert_stem_blob(azurite.connection_string, output, request_id="req-cli-1", model=TINY_MODEL, duration=1.0)

    (received,) = callback_receiver.wait_for(1, timeout=30)
    assert received.verified, "webhook-signature does not verify with the Secret's key"
    event = c.EventType.SUCCEEDED.value
    assert received.json["type"] == event
    assert received.webhook_id == webhook_id(created["metadata"]["uid"], event)
    data = received.json["data"]
    assert data["requestId"] == "req-cli-1" and data["audioFileId"] == "audio-77" and data["error"] is None
    assert data["outputs"] == status["outputs"] and data["seed"] == 1234
    assert status["callback"]["state"] == c.CallbackState.DELIVERED.value and status["callback"]["attempts"] == 1

    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines and all(line.get("namespace") == namespace and line.get("name") == "cli-run" for line in lines)
    assert any(line.get("requestId") == "req-cli-1" for line in lines)


def test_missing_model_fails_permanently_with_a_clear_error(create_request, read_request, runner_env,
                                                            callback_receiver) -> None:
    create_request("no-model", {"stems": ["drums"], "durationSeconds": 1, "model": "stemgen/not-there",
                                "retries": 3, "callback": {"url": callback_receiver.url}})
    result = _runner(runner_env("no-model"))
    assert result.returncode == c.ExitCode.PERMANENT_FAILURE, result.stderr[-3000:]
    status = read_request("no-model")["status"]
    assert status["phase"] == c.Phase.FAILED.value
    assert status["reason"] == c.FailureReason.MODEL_NOT_FOUND.value
    assert "spec.model" in status["message"] and "stemgen/not-there" in status["message"]
    (received,) = callback_receiver.wait_for(1, timeout=30)
    assert received.json["type"] == c.EventType.FAILED.value
    assert received.json["data"]["error"]["reason"] == c.FailureReason.MODEL_NOT_FOUND.value


def test_unknown_resource_exits_permanently(runner_env) -> None:
    result = _runner(runner_env("does-not-exist"))
    assert result.returncode == c.ExitCode.PERMANENT_FAILURE
    assert "not found" in result.stderr


def test_check_reports_device_model_and_storage(runner_env, tiny_model_cache) -> None:
    result = _runner(runner_env("unused"), "check", "--model", str(tiny_model_cache / TINY_MODEL))
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert report["ready"] is True
    assert report["device"]["type"] in ("cpu", "cuda")
    assert report["model"]["loadable"] is True and report["model"]["sampleRate"] == 32000
    assert report["storage"]["reachable"] is True
