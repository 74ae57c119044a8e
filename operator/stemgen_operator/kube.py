"""Every Kubernetes API call the operator makes itself (kopf makes the watches).

Synchronous on purpose: the official client is synchronous, and `Cluster` methods run in a
thread pool (see `reconciler.Io`). Responses are decoded as plain JSON dicts, skipping the
client's model classes, which are slow to build and would be turned back into dicts anyway.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from stemgen_api import contract as c

from . import resource as r

log = logging.getLogger(__name__)

Obj = dict[str, Any]
COMPONENT = "stemgen-operator"


class Conflict(Exception):
    """The object changed since it was read: re-read and decide again."""


class Gone(Exception):
    """The object was deleted: nothing left to decide about."""


def load_configuration(kubeconfig: str | None) -> client.Configuration:
    """A client configuration of its own (never the library's global default), so an operator
    running in a test process cannot leak credentials into, or take them from, anything else."""
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        return configuration
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    return configuration


def _json(response: Any) -> Any:
    return json.loads(response.data)


def _list_version(responses: list[Any]) -> int | None:
    versions = []
    for response in responses:
        try:
            versions.append(int((response.get("metadata") or {}).get("resourceVersion")))
        except (TypeError, ValueError):
            return None
    return min(versions) if versions else None


def _missing(error: ApiException) -> bool:
    return error.status == 404


class Cluster:
    """The operator's view of the API server: requests, Jobs, pods, Secrets, Events."""

    def __init__(self, configuration: client.Configuration, pool_size: int = 16, request_timeout: float = 60.0):
        configuration.connection_pool_maxsize = max(pool_size, getattr(configuration, "connection_pool_maxsize", 0))
        self.api_client = client.ApiClient(configuration)
        self.custom = client.CustomObjectsApi(self.api_client)
        self.batch = client.BatchV1Api(self.api_client)
        self.core = client.CoreV1Api(self.api_client)
        self.timeout = request_timeout

    def close(self) -> None:
        self.api_client.close()

    # StemGenerations -------------------------------------------------------------------------

    def get_request(self, namespace: str, name: str) -> Obj | None:
        try:
            return self.custom.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, name,
                                                            _request_timeout=self.timeout)
        except ApiException as error:
            if _missing(error):
                return None
            raise

    def list_requests(self, namespaces: Iterable[str]) -> tuple[list[Obj], int | None]:
        """All requests, and the listing's resourceVersion (the oldest, over several namespaces)."""
        spaces = list(namespaces)
        if not spaces:
            response = self.custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.PLURAL,
                                                              _request_timeout=self.timeout)
            return list(response.get("items") or []), _list_version([response])
        responses = [self.custom.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL,
                                                               _request_timeout=self.timeout) for namespace in spaces]
        return [item for response in responses for item in response.get("items") or []], _list_version(responses)

    def patch_status(self, body: r.Body, patch: dict[str, Any], guarded: bool = True) -> Obj:
        """Merge-patch status; `guarded` sends the read resourceVersion so a concurrent writer
        (the runner) makes this fail with Conflict instead of being overwritten."""
        ref = r.ref(body)
        document: dict[str, Any] = {"status": patch}
        if guarded:
            document["metadata"] = {"resourceVersion": (body.get("metadata") or {}).get("resourceVersion")}
        try:
            return self.custom.patch_namespaced_custom_object_status(
                c.GROUP, c.VERSION, ref.namespace, c.PLURAL, ref.name, document, _request_timeout=self.timeout)
        except ApiException as error:
            if error.status == 409:
                raise Conflict(str(ref)) from error
            if error.status == 404:
                raise Gone(str(ref)) from error
            raise

    def delete_request(self, ref: r.Ref) -> bool:
        """Delete one request (only that uid: a re-created namesake survives). False if gone."""
        options = client.V1DeleteOptions(propagation_policy="Background",
                                         preconditions=client.V1Preconditions(uid=ref.uid) if ref.uid else None)
        try:
            self.custom.delete_namespaced_custom_object(c.GROUP, c.VERSION, ref.namespace, c.PLURAL, ref.name,
                                                        body=options, _request_timeout=self.timeout)
            return True
        except ApiException as error:
            if error.status in (404, 409):
                return False
            raise

    # Jobs and pods ---------------------------------------------------------------------------

    def list_jobs(self, namespaces: Iterable[str]) -> tuple[list[Obj], int | None]:
        selector = f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY}"
        spaces = list(namespaces)
        if not spaces:
            responses = [_json(self.batch.list_job_for_all_namespaces(
                label_selector=selector, _preload_content=False, _request_timeout=self.timeout))]
        else:
            responses = [_json(self.batch.list_namespaced_job(
                namespace, label_selector=selector, _preload_content=False, _request_timeout=self.timeout))
                for namespace in spaces]
        return [item for response in responses for item in response.get("items") or []], _list_version(responses)

    def get_job(self, namespace: str, name: str) -> Obj | None:
        try:
            return _json(self.batch.read_namespaced_job(name, namespace, _preload_content=False,
                                                        _request_timeout=self.timeout))
        except ApiException as error:
            if _missing(error):
                return None
            raise

    def create_job(self, manifest: Obj) -> tuple[Obj, bool]:
        """Create the Job, or return the one already there (created: False) to adopt it."""
        meta = manifest["metadata"]
        try:
            created = _json(self.batch.create_namespaced_job(meta["namespace"], manifest, _preload_content=False,
                                                             _request_timeout=self.timeout))
            return created, True
        except ApiException as error:
            if error.status != 409:
                raise
        existing = self.get_job(meta["namespace"], meta["name"])
        if existing is None:  # deleted between the two calls; the next pass creates it again
            raise Conflict(f"{meta['namespace']}/{meta['name']}")
        return existing, False

    def delete_job(self, namespace: str, name: str) -> bool:
        """Background propagation: the call returns at once and the GC removes the pods."""
        try:
            self.batch.delete_namespaced_job(name, namespace, propagation_policy="Background",
                                             _request_timeout=self.timeout)
            return True
        except ApiException as error:
            if _missing(error):
                return False
            raise

    def list_pods(self, namespace: str, job_name: str) -> list[Obj]:
        return list(_json(self.core.list_namespaced_pod(
            namespace, label_selector=f"job-name={job_name}", _preload_content=False,
            _request_timeout=self.timeout)).get("items") or [])

    # Secrets and Events ------------------------------------------------------------------------

    def read_secret_value(self, namespace: str, name: str, key: str) -> str | None:
        try:
            secret = _json(self.core.read_namespaced_secret(name, namespace, _preload_content=False,
                                                            _request_timeout=self.timeout))
        except ApiException as error:
            if _missing(error):
                return None
            raise
        value = (secret.get("data") or {}).get(key)
        if value is not None:
            return base64.b64decode(value).decode()
        string_value = (secret.get("stringData") or {}).get(key)
        return string_value

    def post_event(self, body: r.Body, reason: str, message: str, warning: bool = False) -> None:
        """A core/v1 Event on the object (what `kubectl describe` and `kubectl get events` show)."""
        meta = body.get("metadata") or {}
        now = datetime.now(timezone.utc)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta.get('name', 'object')[:200]}.{uuid.uuid4().hex[:16]}",
                         "namespace": meta.get("namespace")},
            "involvedObject": {"apiVersion": body.get("apiVersion", c.API_VERSION), "kind": body.get("kind", c.KIND),
                               "name": meta.get("name"), "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "firstTimestamp": r.rfc3339(now),
            "lastTimestamp": r.rfc3339(now),
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(meta.get("namespace"), event, _preload_content=False,
                                              _request_timeout=self.timeout)
        except ApiException as error:  # events are for humans; never fail a transition over one
            log.warning("could not post event %s on %s/%s: %s", reason, meta.get("namespace"), meta.get("name"),
                        error.reason)
