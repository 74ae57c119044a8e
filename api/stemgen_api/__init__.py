"""The StemGeneration contract shared by the operator, the runner and the client.

Everything both sides must agree on — API group, field names, phases, condition types,
label keys, exit codes — is defined here once, and the CRD is generated from it.
"""
