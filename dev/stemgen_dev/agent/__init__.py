"""Building blocks of the node agent (a stand-in kubelet for tests and the local demo).

Pure parts (node manifests, pod env/volume resolution, pod status) are kept apart from the
parts that do I/O (processes, API calls) so they can be unit-tested without a cluster.
`stemgen_dev.node_agent` wires them together.
"""
