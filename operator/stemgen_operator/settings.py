"""Operator settings, read from the environment (the chart fills it from a ConfigMap).

Everything that differs between clusters lives here and nowhere else: node pools and their
limits, the runner image and command, the model cache PVC, how the runner reaches storage,
the callback policy and Kueue. The settings are validated once at start; a bad value stops
the operator with a message that names the environment variable, instead of surfacing later
as a Job the API server rejects.

Variables are prefixed `STEMGEN_OPERATOR_`; structured values are JSON, e.g.
`STEMGEN_OPERATOR_GPU_POOL='{"limit": 4, "nodeSelector": {"agentpool": "gpu"}}'`, and nested
fields may also be set one by one: `STEMGEN_OPERATOR_CPU_POOL__LIMIT=8`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from stemgen_api import contract as c
from stemgen_api.webhooks import RetryPolicy

ENV_PREFIX = "STEMGEN_OPERATOR_"
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"


class _Model(BaseModel):
    """camelCase aliases so JSON in Helm values reads like Kubernetes YAML; snake_case works too."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class Resources(_Model):
    """Container requests/limits, as Kubernetes quantities (`"2"`, `"8Gi"`)."""

    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)


class PoolSettings(_Model):
    """One node pool: where its Jobs land, what they may use, and how many run at once."""

    limit: int = Field(2, ge=0, le=10000)
    """Concurrent Jobs admitted by the operator's own queue; 0 pauses the pool (requests wait)."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    gpu_resource: str = DEFAULT_GPU_RESOURCE
    """Extended resource requested per GPU pod (GPU pool only)."""
    gpus: int = Field(1, ge=1, le=16)
    priority_class_name: str | None = None

    @field_validator("tolerations")
    @classmethod
    def _tolerations_have_operator_or_key(cls, tolerations: list[dict[str, Any]]) -> list[dict[str, Any]]:
        allowed = {"key", "operator", "value", "effect", "tolerationSeconds"}
        for index, toleration in enumerate(tolerations):
            unknown = set(toleration) - allowed
            if unknown:
                raise ValueError(f"toleration {index} has unknown field(s) {sorted(unknown)}; "
                                 f"allowed: {sorted(allowed)}")
        return tolerations


def _default_cpu_pool() -> PoolSettings:
    return PoolSettings(limit=2, resources=Resources(requests={"cpu": "2", "memory": "4Gi"},
                                                     limits={"memory": "8Gi"}))


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore",
                                      populate_by_name=True)

    # Where the operator looks.
    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Watched namespaces (comma-separated); empty watches the whole cluster."""
    kubeconfig: str | None = None
    """Kubeconfig path; unset means in-cluster credentials, then the default kubeconfig."""

    # Node pools.
    gpu_pool: PoolSettings | None = None
    """The GPU pool; unset means the cluster has none, and `device: auto` runs on CPU."""
    cpu_pool: PoolSettings = Field(default_factory=_default_cpu_pool)

    # The runner's Job.
    runner_image: str = "ghcr.io/stemgen/runner:0.1.0"
    runner_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    runner_command: list[str] = Field(default_factory=lambda: ["stemgen-runner", "run"])
    runner_args: list[str] = Field(default_factory=list)
    runner_service_account: str = "stemgen-runner"
    runner_env: dict[str, str] = Field(default_factory=dict)
    """Extra plain env for the runner (never secrets: those go by secretKeyRef)."""
    runner_run_as_user: int = Field(10001, ge=1)
    runner_run_as_group: int = Field(10001, ge=1)
    runner_fs_group: int | None = 10001
    runner_tmp_size_limit: str = "2Gi"
    image_pull_secrets: list[str] = Field(default_factory=list)
    job_ttl_seconds_after_finished: int | None = Field(3600, ge=0)
    """The Job's own TTL (the resource keeps its status; the Job and its pods go)."""

    # Model cache.
    model_cache_pvc: str | None = "stemgen-model-cache"
    model_cache_mount_path: str = "/models"
    model_cache_read_only: bool = False

    # Storage credentials for the runner: a Secret holding a connection string, or workload identity.
    storage_secret_name: str | None = "stemgen-storage"
    storage_secret_key: str = "connection-string"
    storage_account_url: str | None = None
    workload_identity: bool = False
    """Label runner pods for AKS workload identity (the ServiceAccount carries the client id)."""

    # Callbacks the operator sends itself (failure, cancel).
    callback_allow_private: bool = False
    """Allow callback URLs on loopback/link-local hosts: local demos and tests only."""
    callback_max_attempts: int = Field(6, ge=1, le=50)
    callback_initial_delay: float = Field(1.0, ge=0)
    callback_max_delay: float = Field(30.0, ge=0)
    callback_max_total_seconds: float = Field(120.0, ge=0)
    callback_timeout: float = Field(10.0, gt=0)

    # Kueue.
    kueue_default_queue: str | None = None
    """When set, every request's Job goes to this LocalQueue (spec.queueName wins) and Kueue admits it."""

    # The operator's own loop, endpoints and Kubernetes client.
    resync_seconds: float = Field(30.0, gt=0)
    """Full reconcile pass even without events: catches anything a missed event left behind."""
    admissions_per_pass: int = Field(64, ge=1, le=10000)
    """Jobs created per reconcile pass at most; a bigger backlog continues in the next pass at once."""
    position_refresh_seconds: float = Field(5.0, ge=0)
    """Minimum gap between rewriting every queued request's position (each is one API write)."""
    metrics_port: int = Field(9090, ge=0, le=65535)
    """Prometheus metrics port; 0 disables the endpoint."""
    liveness_port: int = Field(8080, ge=0, le=65535)
    """kopf's /healthz port; 0 disables it."""
    api_workers: int = Field(16, ge=1, le=256)
    """Threads for Kubernetes API calls and callbacks (the client library is synchronous)."""
    watch_server_timeout: int = Field(300, ge=10)
    watch_client_timeout: int = Field(330, ge=10)
    connect_timeout: float = Field(15.0, gt=0)
    request_timeout: float = Field(60.0, gt=0)
    batch_window: float = Field(0.05, ge=0)
    standalone: bool = True
    """No peering: run one replica (the Deployment uses the Recreate strategy)."""
    peering_name: str | None = None
    log_format: Literal["json", "plain", "full"] = "json"

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("image_pull_secrets", mode="before")
    @classmethod
    def _pull_secret_names(cls, value: Any) -> Any:
        """Accept Kubernetes' own shape (`[{"name": "x"}]`, as Helm values carry it) or plain names."""
        if isinstance(value, list):
            return [item.get("name") if isinstance(item, dict) else item for item in value]
        return value

    @field_validator("runner_command")
    @classmethod
    def _command_not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least the executable")
        return value

    @field_validator("runner_env")
    @classmethod
    def _env_not_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = {c.ENV_NAMESPACE, c.ENV_NAME, c.ENV_STORAGE_CONNECTION_STRING, c.ENV_CALLBACK_SECRET}
        clash = sorted(reserved & set(value))
        if clash:
            raise ValueError(f"{clash} are set by the operator itself")
        return value

    @model_validator(mode="after")
    def _peering_name_turns_peering_on(self) -> OperatorSettings:
        if self.peering_name and self.standalone:
            self.standalone = False
        return self

    # Derived views -------------------------------------------------------------------------

    def pool(self, pool: c.Pool) -> PoolSettings | None:
        return self.gpu_pool if pool is c.Pool.GPU else self.cpu_pool

    def limits(self) -> dict[c.Pool, int]:
        return {pool: settings.limit for pool in c.Pool if (settings := self.pool(pool)) is not None}

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=self.callback_max_attempts, initial_delay=self.callback_initial_delay,
                           max_delay=self.callback_max_delay, max_total_seconds=self.callback_max_total_seconds,
                           timeout=self.callback_timeout)


class SettingsError(ValueError):
    """Settings that cannot work; the message names each offending environment variable."""


def load_settings(**overrides: Any) -> OperatorSettings:
    """Read and validate the settings, turning pydantic's report into one line per variable."""
    try:
        return OperatorSettings(**overrides)
    except ValidationError as error:
        lines = []
        for problem in error.errors():
            location = [str(part) for part in problem["loc"]]
            variable = ENV_PREFIX + location[0].upper() if location else ENV_PREFIX
            inner = ".".join(location[1:])
            lines.append(f"{variable}{'.' + inner if inner else ''}: {problem['msg']}")
        raise SettingsError("invalid operator settings:\n  " + "\n  ".join(lines)) from None
