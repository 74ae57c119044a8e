"""Exit codes of the `stemgen` CLI: scripts branch on these, so they never change meaning.

docs/usage.md lists them; a test checks every code here is documented there.
"""

from __future__ import annotations

import enum


class CliExit(enum.IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    FAILED = 3
    CANCELLED = 4
    TIMEOUT = 5
    NOT_FOUND = 6
    CONFLICT = 7
    INTEGRITY = 8
    NOT_READY = 9


DESCRIPTIONS: dict[CliExit, str] = {
    CliExit.OK: "success (for `submit --wait`/`wait`: the request Succeeded)",
    CliExit.ERROR: "any other error: API server unreachable after retries, permission denied, bad kubeconfig",
    CliExit.USAGE: "bad command line, or an invalid spec (the message names the field)",
    CliExit.FAILED: "the request ended in phase Failed (the reason is printed)",
    CliExit.CANCELLED: "the request ended in phase Cancelled",
    CliExit.TIMEOUT: "`--timeout` passed before the request ended",
    CliExit.NOT_FOUND: "no such request (for `logs`: no runner pod yet; for `download`: a blob is missing)",
    CliExit.CONFLICT: "the name is taken by another request, or the request id by a different spec",
    CliExit.INTEGRITY: "a downloaded stem's sha256 differs from status.outputs (the file is not kept)",
    CliExit.NOT_READY: "not there yet: `download` of a request that has not Succeeded, `logs` of a pod not on a node",
}
