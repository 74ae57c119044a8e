"""Turn a Pod's container spec into what a local process needs: argv, env, directories.

A local process cannot mount volumes, so each volume becomes a local directory and every
path under a mount point is rewritten to that directory, in env values and in arguments.
This is the one deliberate difference from a kubelet; everything else (env precedence,
`$(VAR)` expansion, secret/configMap/fieldRef lookups, their error messages) follows the
kubelet's rules so a Pod that runs here runs on a real node.

Everything here is pure given a `SourceLookup` (the only I/O: reading Secrets and
ConfigMaps), which keeps it unit-testable without a cluster.
"""

from __future__ import annotations

import base64
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from kubernetes.utils import parse_quantity

DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
ROOT_CA_CONFIG_MAP = "kube-root-ca.crt"
ENV_NAME_PATTERN = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class SourceLookup(Protocol):
    """Reads the objects env and volumes refer to; None when the object does not exist."""

    def secret(self, namespace: str, name: str) -> dict[str, str] | None: ...

    def config_map(self, namespace: str, name: str) -> dict[str, str] | None: ...


class ContainerConfigError(Exception):
    """The container cannot start yet (a referenced Secret/ConfigMap or key is missing).

    A kubelet reports this as `CreateContainerConfigError` and keeps retrying: the object
    may be created later.
    """


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names are replaced, unknown ones kept, `$$` escapes."""
    out: list[str] = []
    index = 0
    while index < len(value):
        char = value[index]
        if char == "$" and index + 1 < len(value):
            following = value[index + 1]
            if following == "$":
                out.append("$")
                index += 2
                continue
            if following == "(":
                end = value.find(")", index + 2)
                if end != -1:
                    name = value[index + 2:end]
                    out.append(env[name] if name in env else value[index:end + 1])
                    index = end + 1
                    continue
        out.append(char)
        index += 1
    return "".join(out)


def _labels_value(mapping: Mapping[str, str], path: str, prefix: str) -> str | None:
    match = re.fullmatch(rf"{prefix}\['(.+)'\]", path)
    if not match:
        return None
    return mapping.get(match.group(1), "")


def field_value(pod: Mapping[str, Any], field_path: str, pod_ip: str) -> str:
    """The downward API's fieldRef values (the ones a kubelet supports)."""
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": metadata.get("name", ""),
        "metadata.namespace": metadata.get("namespace", ""),
        "metadata.uid": metadata.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": pod_ip,
        "status.hostIPs": pod_ip,
    }
    if field_path in simple:
        return simple[field_path]
    for prefix, mapping in (("metadata.labels", metadata.get("labels") or {}),
                            ("metadata.annotations", metadata.get("annotations") or {})):
        value = _labels_value(mapping, field_path, re.escape(prefix))
        if value is not None:
            return value
    raise ContainerConfigError(f"unsupported fieldRef fieldPath {field_path!r}")


def resource_field_value(container: Mapping[str, Any], resource: str, divisor: str | None,
                         allocatable: Mapping[str, str]) -> str:
    """resourceFieldRef: the container's limit (node allocatable when unset), divided and rounded up."""
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(name)
    if raw is None and kind == "limits":
        raw = allocatable.get(name)
    if raw is None:
        raw = "0"
    amount = parse_quantity(str(raw))
    unit = parse_quantity(str(divisor)) if divisor else Decimal(1)
    if unit == 0:
        raise ContainerConfigError(f"resourceFieldRef {resource}: divisor must not be zero")
    return str(math.ceil(amount / unit))


def _secret_or_config_value(kind: str, data: dict[str, str] | None, namespace: str, name: str, key: str,
                            optional: bool) -> str | None:
    if data is None:
        if optional:
            return None
        raise ContainerConfigError(f'{kind.lower()} "{name}" not found')
    if key not in data:
        if optional:
            return None
        raise ContainerConfigError(f"couldn't find key {key} in {kind} {namespace}/{name}")
    return data[key]


def resolve_env(pod: Mapping[str, Any], container: Mapping[str, Any], lookup: SourceLookup, *,
                pod_ip: str = "127.0.0.1", allocatable: Mapping[str, str] | None = None) -> dict[str, str]:
    """The container's environment as the kubelet computes it: envFrom first, then env in order.

    `$(VAR)` in a literal `value` expands against what is defined before it; values read
    from Secrets, ConfigMaps and the downward API are never expanded.
    """
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        for kind, ref_key, read in (("ConfigMap", "configMapRef", lookup.config_map),
                                    ("Secret", "secretRef", lookup.secret)):
            ref = source.get(ref_key)
            if not ref:
                continue
            data = read(namespace, ref["name"])
            if data is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'{kind.lower()} "{ref["name"]}" not found')
            for key, value in data.items():
                if ENV_NAME_PATTERN.match(prefix + key):
                    env[prefix + key] = value
    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" not in item or item.get("valueFrom") is None:
            env[name] = expand(item.get("value") or "", env)
            continue
        source = item["valueFrom"]
        value: str | None
        if source.get("secretKeyRef"):
            ref = source["secretKeyRef"]
            value = _secret_or_config_value("Secret", lookup.secret(namespace, ref["name"]), namespace, ref["name"],
                                            ref["key"], bool(ref.get("optional")))
        elif source.get("configMapKeyRef"):
            ref = source["configMapKeyRef"]
            value = _secret_or_config_value("ConfigMap", lookup.config_map(namespace, ref["name"]), namespace,
                                            ref["name"], ref["key"], bool(ref.get("optional")))
        elif source.get("fieldRef"):
            value = field_value(pod, source["fieldRef"]["fieldPath"], pod_ip)
        elif source.get("resourceFieldRef"):
            ref = source["resourceFieldRef"]
            value = resource_field_value(container, ref["resource"], ref.get("divisor"), allocatable or {})
        else:
            raise ContainerConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
        if value is not None:
            env[name] = value
    return env


def decode_secret_data(data: Mapping[str, str] | None) -> dict[str, str]:
    """Secret `.data` is base64; env and files want the decoded text."""
    return {key: base64.b64decode(value).decode("utf-8", errors="replace") for key, value in (data or {}).items()}


# --- volumes and paths -------------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """A path inside the container and the local path standing in for it."""

    container_path: str
    local_path: Path


def volume_path(volume: Mapping[str, Any], *, volume_root: Path, pod_dir: Path,
                claim_dirs: Mapping[str, Path] | None = None) -> Path:
    """Where a volume lives locally.

    PersistentVolumeClaims map to `<volume_root>/<claimName>` so every pod that mounts the
    same claim sees the same files (like a ReadWriteMany azurefile share); everything
    pod-scoped (emptyDir, configMap, secret, projected, downwardAPI) lives in the pod's dir.
    """
    name = volume["name"]
    claim = volume.get("persistentVolumeClaim")
    if claim:
        claim_name = claim["claimName"]
        return Path((claim_dirs or {}).get(claim_name) or volume_root / claim_name)
    host_path = volume.get("hostPath")
    if host_path:
        return Path(host_path["path"])
    return pod_dir / "volumes" / name


def _items(data: Mapping[str, str], items: Sequence[Mapping[str, Any]] | None) -> dict[str, str]:
    if not items:
        return dict(data)
    return {item["path"]: data[item["key"]] for item in items if item["key"] in data}


def volume_files(volume: Mapping[str, Any], pod: Mapping[str, Any], lookup: SourceLookup, *,
                 token: str = "", ca_data: str = "", pod_ip: str = "127.0.0.1") -> dict[str, str]:
    """Files a configMap/secret/projected/downwardAPI volume holds (relative path → text)."""
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    files: dict[str, str] = {}

    def add_source(kind: str, source: Mapping[str, Any]) -> None:
        if kind == "configMap":
            data = lookup.config_map(namespace, source["name"])
            if data is None and not source.get("optional"):
                raise ContainerConfigError(f'configmap "{source["name"]}" not found')
            files.update(_items(data or {}, source.get("items")))
        elif kind == "secret":
            secret_name = source.get("secretName") or source.get("name")
            data = lookup.secret(namespace, secret_name)
            if data is None and not source.get("optional"):
                raise ContainerConfigError(f'secret "{secret_name}" not found')
            files.update(_items(data or {}, source.get("items")))
        elif kind == "downwardAPI":
            for item in source.get("items") or []:
                if item.get("fieldRef"):
                    files[item["path"]] = field_value(pod, item["fieldRef"]["fieldPath"], pod_ip)
        elif kind == "serviceAccountToken":
            files[source.get("path") or "token"] = token

    if volume.get("configMap"):
        add_source("configMap", volume["configMap"])
    elif volume.get("secret"):
        add_source("secret", volume["secret"])
    elif volume.get("downwardAPI"):
        add_source("downwardAPI", volume["downwardAPI"])
    elif volume.get("projected"):
        for source in volume["projected"].get("sources") or []:
            for kind in ("configMap", "secret", "downwardAPI", "serviceAccountToken"):
                if not source.get(kind):
                    continue
                if kind == "configMap" and source[kind].get("name") == ROOT_CA_CONFIG_MAP:
                    # The service-account volume's CA: published by the controller-manager only when it
                    # has a root CA file, so fall back to the CA the agent itself trusts.
                    add_source(kind, {**source[kind], "optional": True})
                    files.setdefault("ca.crt", ca_data)
                else:
                    add_source(kind, source[kind])
    return files


def container_mounts(container: Mapping[str, Any], volume_paths: Mapping[str, Path], *,
                     termination_log: Path | None = None) -> list[Mount]:
    """The container's mounts as local paths (subPath honoured), plus its termination-log file."""
    mounts: list[Mount] = []
    for mount in container.get("volumeMounts") or []:
        local = volume_paths.get(mount["name"])
        if local is None:
            raise ContainerConfigError(f"volumeMount {mount['name']!r} refers to no volume of the pod")
        if mount.get("subPath"):
            local = local / mount["subPath"]
        mounts.append(Mount(container_path=mount["mountPath"].rstrip("/") or "/", local_path=local))
    if termination_log is not None:
        path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH
        mounts.append(Mount(container_path=path, local_path=termination_log))
    return mounts


class PathRewriter:
    """Rewrites container paths under a mount point to their local stand-ins.

    The longest mount point wins (a mount at /cache/hf beats one at /cache). Values holding
    several `:`-separated paths (PATH-like) and `--flag=/path` arguments are handled; any
    other text is left alone, so URLs and connection strings pass through unchanged.
    """

    def __init__(self, mounts: Iterable[Mount]) -> None:
        self.mounts = sorted(mounts, key=lambda mount: len(mount.container_path), reverse=True)

    def rewrite_path(self, value: str) -> str:
        for mount in self.mounts:
            root = mount.container_path
            if value == root:
                return str(mount.local_path)
            if value.startswith(root.rstrip("/") + "/"):
                return str(mount.local_path / value[len(root.rstrip("/")) + 1:])
        return value

    def rewrite_value(self, value: str) -> str:
        if ":" in value and "://" not in value:
            return ":".join(self.rewrite_path(part) for part in value.split(":"))
        return self.rewrite_path(value)

    def rewrite_arg(self, arg: str) -> str:
        if arg.startswith("-") and "=" in arg:
            flag, _, value = arg.partition("=")
            return f"{flag}={self.rewrite_value(value)}"
        return self.rewrite_value(arg)

    def rewrite_env(self, env: Mapping[str, str]) -> dict[str, str]:
        return {name: self.rewrite_value(value) for name, value in env.items()}


# --- command and limits ------------------------------------------------------------------------


def container_argv(container: Mapping[str, Any], image_entrypoints: Mapping[str, Sequence[str]],
                   env: Mapping[str, str]) -> list[str]:
    """command + args with `$(VAR)` expanded; an image's entrypoint comes from the configured map.

    The map's keys are substrings of image references (e.g. `stemgen-runner`), because a
    local process has no image to read an ENTRYPOINT from.
    """
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    if not command:
        image = container.get("image") or ""
        for pattern, entrypoint in image_entrypoints.items():
            if pattern in image:
                command = list(entrypoint)
                break
        else:
            raise ContainerConfigError(
                f"container {container.get('name')!r} has no command and image {image!r} has no configured "
                "entrypoint (node agent option --image-entrypoint PATTERN=COMMAND)")
    return [expand(part, env) for part in command + args]


def resolve_executable(argv0: str, search_path: Sequence[str]) -> str:
    """Find the program locally: as given if it exists, else its basename on the search path.

    Image paths such as /usr/local/bin/python or /opt/venv/bin/stemgen-runner do not exist
    here; their basename on the agent's PATH (the venv first) is the local equivalent.
    """
    if os.path.isabs(argv0) and os.access(argv0, os.X_OK):
        return argv0
    base = os.path.basename(argv0)
    for directory in search_path:
        candidate = os.path.join(directory, base)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return argv0


def memory_limit_bytes(container: Mapping[str, Any]) -> int | None:
    limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    return int(parse_quantity(str(limit))) if limit is not None else None


def gpu_request(container: Mapping[str, Any], resource: str = "nvidia.com/gpu") -> int:
    resources = container.get("resources") or {}
    raw = (resources.get("limits") or {}).get(resource) or (resources.get("requests") or {}).get(resource)
    return int(parse_quantity(str(raw))) if raw is not None else 0
