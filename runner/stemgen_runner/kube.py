"""The Kubernetes API client: in-cluster config in a pod, kubeconfig elsewhere.

A private ApiClient (not the library's global default configuration) so a test process can
run the runner against one cluster while other code in it talks to another.
"""

from __future__ import annotations

import os

from kubernetes import client, config


def api_client(kubeconfig: str | None = None) -> client.ApiClient:
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    return config.new_client_from_config(config_file=kubeconfig or os.environ.get("KUBECONFIG"))


def custom_objects(kubeconfig: str | None = None) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client(kubeconfig))
