"""`StemGenClient`: create, read, watch, wait for, cancel and delete StemGenerations.

Meant for backend services: typed results, contract validation before any round trip,
transient API errors retried, and `create` idempotent per request id so a caller can safely
retry its own request after a crash or timeout.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from stemgen_api import contract as c

from . import config as client_config
from .errors import NotFound, NotReady, RequestCancelled, RequestConflict, RequestFailed, WaitTimeout
from .models import Output, StemGeneration
from .retry import RetryPolicy, call_with_retries, is_transient
from .spec import SpecLike, build_manifest, build_spec, spec_differences

log = logging.getLogger(__name__)

WATCH_CHUNK_SECONDS = 60
"""Server-side watch timeout per stream: short enough that a silently dead connection is noticed
and the watch restarted (a known failure mode of long watches), long enough to be cheap."""

UpdateHook = Callable[[StemGeneration], None]


class StemGenClient:
    """A StemGeneration client bound to one API connection and a default namespace.

    `StemGenClient()` uses the in-cluster service account inside a pod and `~/.kube/config`
    elsewhere; pass `kubeconfig=`/`context=` or a ready `api_client=` to choose.
    """

    def __init__(self, api_client: k8s.ApiClient | None = None, *, namespace: str | None = None,
                 kubeconfig: str | None = None, context: str | None = None, in_cluster: bool | None = None,
                 retry_policy: RetryPolicy | None = None):
        self.api_client = api_client or client_config.api_client(kubeconfig, context, in_cluster)
        self.namespace = namespace or client_config.current_namespace(kubeconfig, context)
        self.retry_policy = retry_policy or RetryPolicy()
        self.custom = k8s.CustomObjectsApi(self.api_client)
        self.core = k8s.CoreV1Api(self.api_client)

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, what: str, func: Callable[[], Any]) -> Any:
        return call_with_retries(func, what, self.retry_policy)

    def _ns(self, namespace: str | None) -> str:
        return namespace or self.namespace

    def _not_found(self, name: str, namespace: str) -> NotFound:
        return NotFound(f"{c.KIND} {namespace}/{name} not found")

    # -- create -----------------------------------------------------------------------------

    def create(self, spec: SpecLike | None = None, *, name: str | None = None, namespace: str | None = None,
               labels: Mapping[str, str] | None = None, annotations: Mapping[str, str] | None = None,
               **fields: Any) -> StemGeneration:
        """Create a request from a spec (dict or `StemGenerationSpec`) and/or keyword fields.

        With a `request_id`, creating again returns the existing request instead of a second one.
        Raises `SpecError` (naming each bad field) before contacting the API server.
        """
        return self.create_or_get(spec, name=name, namespace=namespace, labels=labels,
                                  annotations=annotations, **fields)[0]

    def create_or_get(self, spec: SpecLike | None = None, *, name: str | None = None,
                      namespace: str | None = None, labels: Mapping[str, str] | None = None,
                      annotations: Mapping[str, str] | None = None,
                      **fields: Any) -> tuple[StemGeneration, bool]:
        """Like `create`, also saying whether this call created it (`True`) or found it (`False`).

        Idempotence has two layers. The name is derived from the request id, so two racing
        creates collide on the name and the loser gets 409 and reads the winner. A request
        created earlier under an explicit, different name is found by the request-id label.
        The found request must be the same request: a different spec under the same request id
        (or name) raises `RequestConflict` naming the fields, like an idempotency key reused
        with other parameters.
        """
        namespace = self._ns(namespace)
        body = build_manifest(build_spec(spec, **fields), namespace, name, labels, annotations)
        request_id = body["spec"].get("requestId")
        if request_id:
            existing = self.find(request_id, namespace)
            if existing is not None:
                return self._same_request(existing, body["spec"], request_id), False
        try:
            created = self._call(f"create {c.KIND} in {namespace}", lambda: self.custom.create_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.PLURAL, body))
        except ApiException as error:
            if error.status != 409 or "name" not in body["metadata"]:
                raise
            existing = self.get(body["metadata"]["name"], namespace)
            # Without spec.requestId the request id is the name, as the contract defines it.
            effective = request_id or body["metadata"]["name"]
            if existing.request_id != effective:
                raise RequestConflict(f"{c.KIND} {namespace}/{existing.name} already exists with request id "
                                      f"{existing.request_id!r}") from error
            return self._same_request(existing, body["spec"], effective), False
        result = StemGeneration.from_dict(created)
        log.info("created namespace=%s name=%s request_id=%s", namespace, result.name, result.request_id)
        return result, True

    def _same_request(self, existing: StemGeneration, spec: dict[str, Any], request_id: str) -> StemGeneration:
        differences = spec_differences(spec, existing.spec)
        if differences:
            raise RequestConflict(f"request id {request_id!r} is already used by {existing.namespace}/{existing.name} "
                                  f"with a different spec ({', '.join(differences)})")
        log.info("request already exists namespace=%s name=%s request_id=%s",
                 existing.namespace, existing.name, request_id)
        return existing

    # -- read -------------------------------------------------------------------------------

    def get(self, name: str, namespace: str | None = None) -> StemGeneration:
        namespace = self._ns(namespace)
        try:
            obj = self._call(f"get {namespace}/{name}", lambda: self.custom.get_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.PLURAL, name))
        except ApiException as error:
            if error.status == 404:
                raise self._not_found(name, namespace) from error
            raise
        return StemGeneration.from_dict(obj)

    def find(self, request_id: str, namespace: str | None = None) -> StemGeneration | None:
        """The request with this request id, if any (label lookup, confirmed on the spec)."""
        matches = [item for item in self.list(namespace, request_id=request_id) if item.request_id == request_id]
        return min(matches, key=lambda item: item.metadata.get("creationTimestamp", "")) if matches else None

    def list(self, namespace: str | None = None, *, phase: str | c.Phase | None = None,
             labels: Mapping[str, str] | str | None = None, request_id: str | None = None,
             all_namespaces: bool = False) -> list[StemGeneration]:
        """Requests in a namespace (or all), filtered by labels and phase, oldest first.

        Phase is filtered here, not by the server: a CRD's status fields are not selectable.
        """
        selector = _label_selector(labels, request_id)
        if all_namespaces:
            result = self._call("list all namespaces", lambda: self.custom.list_cluster_custom_object(
                c.GROUP, c.VERSION, c.PLURAL, label_selector=selector))
        else:
            namespace = self._ns(namespace)
            result = self._call(f"list {namespace}", lambda: self.custom.list_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.PLURAL, label_selector=selector))
        items = [StemGeneration.from_dict(obj) for obj in result.get("items", [])]
        if phase is not None:
            wanted = c.Phase(phase).value if not isinstance(phase, c.Phase) else phase.value
            items = [item for item in items if item.phase_name == wanted]
        return sorted(items, key=lambda item: (item.metadata.get("creationTimestamp", ""), item.namespace, item.name))

    # -- watch and wait ---------------------------------------------------------------------

    def watch(self, name: str | None = None, namespace: str | None = None, *,
              timeout: float | None = None, resource_version: str | None = None,
              labels: Mapping[str, str] | str | None = None) -> Iterator[tuple[str, StemGeneration]]:
        """Yield `(event_type, resource)` for changes (ADDED, MODIFIED, DELETED) until `timeout`.

        Reconnects when the server closes the stream and re-lists when the resource version
        has expired (410 Gone); events may then repeat, never silently go missing.
        """
        namespace = self._ns(namespace)
        deadline = None if timeout is None else time.monotonic() + timeout
        field_selector = f"metadata.name={name}" if name else None
        selector = _label_selector(labels, None)
        while True:
            chunk = WATCH_CHUNK_SECONDS
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                chunk = max(1, min(chunk, math.ceil(remaining)))
            watcher = k8s_watch.Watch()
            try:
                for event in watcher.stream(self.custom.list_namespaced_custom_object, c.GROUP, c.VERSION,
                                            namespace, c.PLURAL, field_selector=field_selector,
                                            label_selector=selector, resource_version=resource_version,
                                            timeout_seconds=chunk, allow_watch_bookmarks=False):
                    event_type = event.get("type")
                    obj = event.get("object") or {}
                    if event_type == "ERROR":
                        if obj.get("code") == 410:
                            resource_version = None
                            break
                        raise ApiException(status=obj.get("code", 500), reason=obj.get("message"))
                    resource = StemGeneration.from_dict(obj)
                    resource_version = resource.resource_version or resource_version
                    yield event_type, resource
                    if deadline is not None and time.monotonic() >= deadline:
                        return
            except ApiException as error:
                if error.status == 410:
                    resource_version = None  # too old: start from "now" (the caller re-reads)
                elif not is_transient(error):
                    raise
                else:
                    time.sleep(1)
            except Exception as error:
                if not is_transient(error):
                    raise
                log.warning("watch of %s in %s interrupted (%s); reconnecting", name or "*", namespace, error)
                time.sleep(1)
            finally:
                watcher.stop()

    def wait_until_done(self, name: str, namespace: str | None = None, *, timeout: float | None = None,
                        on_update: UpdateHook | None = None) -> StemGeneration:
        """Block until the request reaches a terminal phase and return it, whatever the phase.

        `on_update` is called with the first state read and after every change (the CLI's
        progress display hangs off it). Raises `WaitTimeout` or `NotFound` (deleted meanwhile).
        """
        namespace = self._ns(namespace)
        deadline = None if timeout is None else time.monotonic() + timeout
        resource = self.get(name, namespace)
        if on_update:
            on_update(resource)
        while not resource.terminal:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeout(resource, timeout or 0)
            for event_type, update in self.watch(name, namespace, timeout=remaining,
                                                 resource_version=resource.resource_version):
                if event_type == "DELETED":
                    raise NotFound(f"{c.KIND} {namespace}/{name} was deleted while waiting")
                resource = update
                if on_update:
                    on_update(resource)
                if resource.terminal:
                    break
            else:
                # The watch ended (timeout or a 410 restart): re-read so nothing is missed.
                resource = self.get(name, namespace)
                if on_update:
                    on_update(resource)
        return resource

    def wait(self, name: str, namespace: str | None = None, *, timeout: float | None = None,
             on_update: UpdateHook | None = None) -> list[Output]:
        """Wait for the request to finish: its outputs when Succeeded, else raise.

        Raises `RequestFailed` (with `.reason`), `RequestCancelled`, `WaitTimeout` or `NotFound`.
        """
        resource = self.wait_until_done(name, namespace, timeout=timeout, on_update=on_update)
        return outputs_or_raise(resource)

    # -- change -----------------------------------------------------------------------------

    def cancel(self, name: str, namespace: str | None = None) -> StemGeneration:
        """Ask the operator to stop the request (`spec.cancel: true`); returns immediately.

        The spec is frozen once accepted except for `cancel`, so this patch is always allowed.
        """
        namespace = self._ns(namespace)
        try:
            obj = self._call(f"cancel {namespace}/{name}", lambda: self.custom.patch_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.PLURAL, name, {"spec": {"cancel": True}}))
        except ApiException as error:
            if error.status == 404:
                raise self._not_found(name, namespace) from error
            raise
        result = StemGeneration.from_dict(obj)
        log.info("cancel requested namespace=%s name=%s request_id=%s", namespace, name, result.request_id)
        return result

    def delete(self, name: str, namespace: str | None = None, *, missing_ok: bool = False) -> None:
        """Delete the request; the operator stops its Job and reports Cancelled if it was running."""
        namespace = self._ns(namespace)
        try:
            self._call(f"delete {namespace}/{name}", lambda: self.custom.delete_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.PLURAL, name))
        except ApiException as error:
            if error.status == 404:
                if missing_ok:
                    return
                raise self._not_found(name, namespace) from error
            raise
        log.info("deleted namespace=%s name=%s", namespace, name)

    # -- runner pods ------------------------------------------------------------------------

    def runner_pods(self, name: str, namespace: str | None = None) -> list[k8s.V1Pod]:
        """The request's runner pods (one per attempt), oldest first, found by the operator's label."""
        namespace = self._ns(namespace)
        pods = self._call(f"list pods of {namespace}/{name}", lambda: self.core.list_namespaced_pod(
            namespace, label_selector=f"{c.LABEL_NAME}={name}"))
        return sorted(pods.items, key=lambda pod: (pod.metadata.creation_timestamp or 0, pod.metadata.name))

    def logs(self, name: str, namespace: str | None = None, *, pod: str | None = None,
             tail_lines: int | None = None, follow: bool = False) -> Iterator[str]:
        """Lines of the latest (or the named) runner pod's log; with `follow`, until the pod ends."""
        namespace = self._ns(namespace)
        pods = self.runner_pods(name, namespace)
        if not pods:
            raise NotFound(f"no runner pod for {namespace}/{name} yet (label {c.LABEL_NAME}={name})")
        chosen = pods[-1] if pod is None else next((p for p in pods if p.metadata.name == pod), None)
        if chosen is None:
            raise NotFound(f"pod {pod} is not a runner pod of {namespace}/{name}; "
                           f"runner pods: {', '.join(p.metadata.name for p in pods)}")
        if not chosen.spec.node_name:
            # The API server answers an unscheduled pod's log with an empty body; say why instead.
            raise NotReady(f"runner pod {chosen.metadata.name} is not on a node yet "
                           f"(phase {chosen.status.phase if chosen.status else 'Pending'}); no log yet")
        pod = chosen.metadata.name
        kwargs: dict[str, Any] = {"tail_lines": tail_lines} if tail_lines is not None else {}
        if follow:
            response = self.core.read_namespaced_pod_log(pod, namespace, follow=True, _preload_content=False,
                                                         **kwargs)
            try:
                pending = b""
                for chunk in response.stream(4096):
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        yield line.decode(errors="replace")
                if pending:
                    yield pending.decode(errors="replace")
            finally:
                response.release_conn()
            return
        text = self._call(f"logs of pod {namespace}/{pod}", lambda: self.core.read_namespaced_pod_log(
            pod, namespace, **kwargs))
        yield from text.splitlines()


def outputs_or_raise(resource: StemGeneration) -> list[Output]:
    if resource.phase is c.Phase.SUCCEEDED:
        return resource.outputs
    if resource.phase is c.Phase.CANCELLED:
        raise RequestCancelled(resource)
    raise RequestFailed(resource)


def _label_selector(labels: Mapping[str, str] | str | None, request_id: str | None) -> str | None:
    parts = []
    if isinstance(labels, str):
        parts.append(labels)
    elif labels:
        parts.extend(f"{key}={value}" for key, value in labels.items())
    if request_id:
        parts.append(f"{c.LABEL_REQUEST_ID}={c.request_id_label_value(request_id)}")
    return ",".join(parts) or None
