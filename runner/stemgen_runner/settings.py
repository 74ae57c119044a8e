"""Runner settings, read from the environment the operator puts on the Job's container.

Secrets (storage connection string, callback signing secret) arrive as env vars from
secretKeyRefs, so the runner's ServiceAccount never needs RBAC on Secrets.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from stemgen_api import contract as c
from stemgen_api.webhooks import RetryPolicy

from .audio import PostProcessing


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class RunnerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STEMGEN_", extra="ignore", populate_by_name=True)

    namespace: str | None = Field(None, validation_alias=_env(c.ENV_NAMESPACE))
    name: str | None = Field(None, validation_alias=_env(c.ENV_NAME))

    storage_connection_string: str | None = Field(None, validation_alias=_env(c.ENV_STORAGE_CONNECTION_STRING),
                                                  repr=False)
    storage_account_url: str | None = Field(None, validation_alias=_env(c.ENV_STORAGE_ACCOUNT_URL))
    storage_retry_total: int = 4
    storage_initial_backoff: float = 2.0
    storage_timeout: float = 30.0
    create_container: bool = True
    """Create the container when missing; with a scoped identity that may not create, set false."""

    callback_secret: str | None = Field(None, validation_alias=_env(c.ENV_CALLBACK_SECRET), repr=False)
    callback_allow_private: bool = False
    """Send callbacks to loopback/link-local hosts (local demo and tests only)."""
    callback_max_attempts: int = 6
    callback_initial_delay: float = 1.0
    callback_max_delay: float = 30.0
    callback_max_total_seconds: float = 120.0
    callback_timeout: float = 10.0

    model_cache: str | None = Field(None, validation_alias=_env(c.ENV_MODEL_CACHE))
    """The cache PVC's mount point: HF_HOME defaults to <model_cache>/huggingface; local
    checkpoints may live in <model_cache>/<model>/."""
    allow_download: bool = False
    """A run never downloads unless allowed: a cold cache must fail fast, not pull GBs per pod."""
    device: str | None = None
    """Force a torch device (`cpu`, `cuda`, `cuda:1`) instead of deciding from spec.device."""

    cpu_threads: int | None = None
    """torch CPU threads; default: the container's CPU limit (see model.cpu_threads)."""

    progress_interval: float = 1.0
    """Minimum seconds between progress patches, so a long generation does not flood the apiserver."""

    peak_dbfs: float = -1.0
    fade_in_ms: float = 10.0
    fade_out_ms: float = 50.0

    log_format: str = "json"

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=self.callback_max_attempts, initial_delay=self.callback_initial_delay,
                           max_delay=self.callback_max_delay, max_total_seconds=self.callback_max_total_seconds,
                           timeout=self.callback_timeout)

    def post_processing(self) -> PostProcessing:
        return PostProcessing(peak_dbfs=self.peak_dbfs, fade_in_ms=self.fade_in_ms, fade_out_ms=self.fade_out_ms)
