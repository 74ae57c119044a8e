"""Where the client's API connection comes from: a kubeconfig (file + context) or the pod's
service account.

In-cluster is chosen only when no kubeconfig was named and the pod environment is present, so
a developer's explicit `--kubeconfig` always wins, and a backend pod needs no configuration.
"""

from __future__ import annotations

import os

from kubernetes import client, config

SERVICE_HOST_ENV = "KUBERNETES_SERVICE_HOST"


def kubeconfig_path(kubeconfig: str | None) -> str | None:
    """The kubeconfig to read: the explicit one, else `$KUBECONFIG` as it is *now*.

    The kubernetes package reads `$KUBECONFIG` once, at import; reading it per call means a
    process that sets it later (a test, a wrapper script) is honoured. None means ~/.kube/config.
    """
    return kubeconfig or os.environ.get("KUBECONFIG") or None


def in_cluster_available() -> bool:
    return bool(os.environ.get(SERVICE_HOST_ENV)) and os.path.exists(config.incluster_config.SERVICE_TOKEN_FILENAME)


def api_client(kubeconfig: str | None = None, context: str | None = None,
               in_cluster: bool | None = None) -> client.ApiClient:
    """A new `ApiClient` (never the process-wide default, so two clients never share state).

    `in_cluster=None` means auto: service account when running in a pod and no kubeconfig or
    context was given (nor `$KUBECONFIG`), otherwise the kubeconfig.
    """
    if in_cluster is None:
        in_cluster = kubeconfig is None and context is None and not os.environ.get("KUBECONFIG") \
            and in_cluster_available()
    if in_cluster:
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    return config.new_client_from_config(config_file=kubeconfig_path(kubeconfig), context=context)


def current_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace to use when none is given: the context's, the pod's own, or `default`."""
    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig_path(kubeconfig))
        chosen = next((x for x in contexts if x["name"] == context), active) if context else active
        namespace = (chosen or {}).get("context", {}).get("namespace")
        if namespace:
            return str(namespace)
    except (config.ConfigException, OSError):
        pass
    # Next to the service-account token (read at call time, so the location can be moved).
    namespace_file = os.path.join(os.path.dirname(config.incluster_config.SERVICE_TOKEN_FILENAME), "namespace")
    if kubeconfig_path(kubeconfig) is None and os.path.exists(namespace_file):
        with open(namespace_file) as handle:
            return handle.read().strip() or "default"
    return "default"
