"""`stemgen-dev`: bring the local control plane (and Azurite) up and down by hand.

    stemgen-dev cluster up      # prints the kubeconfig path; processes keep running
    stemgen-dev cluster down
    stemgen-dev azurite up|down
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .procs import REPO_ROOT, stop_pid

STATE_DIR = Path(os.environ.get("STEMGEN_STATE_DIR", REPO_ROOT / ".stemgen"))
CLUSTER_STATE = STATE_DIR / "cluster.json"
AZURITE_STATE = STATE_DIR / "azurite.json"


def _cluster_up(_: argparse.Namespace) -> int:
    from .cluster import ControlPlaneError, start_control_plane

    if CLUSTER_STATE.exists():
        state = json.loads(CLUSTER_STATE.read_text())
        print(f"a cluster is already up; kubeconfig: {state['kubeconfig']} (run `stemgen-dev cluster down` first)")
        return 1
    try:
        plane = start_control_plane(STATE_DIR / "cluster")
    except ControlPlaneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    CLUSTER_STATE.write_text(json.dumps(plane.state(), indent=2))
    print(f"control plane up at {plane.server}")
    print(f"export KUBECONFIG={plane.kubeconfig}")
    print(f"kubectl: {plane.bin_dir / 'kubectl'}")
    return 0


def _cluster_down(_: argparse.Namespace) -> int:
    from .cluster import stop_from_state

    if not CLUSTER_STATE.exists():
        print("no cluster is up")
        return 0
    stop_from_state(json.loads(CLUSTER_STATE.read_text()))
    CLUSTER_STATE.unlink()
    print("control plane stopped")
    return 0


def _azurite_up(_: argparse.Namespace) -> int:
    from .azurite import Azurite

    service = Azurite(location=STATE_DIR / "azurite").start()
    AZURITE_STATE.write_text(json.dumps({"pid": service.process.pid, "port": service.port,
                                         "connection_string": service.connection_string}))
    print(f"AZURE_STORAGE_CONNECTION_STRING='{service.connection_string}'")
    return 0


def _azurite_down(_: argparse.Namespace) -> int:
    if AZURITE_STATE.exists():
        stop_pid(json.loads(AZURITE_STATE.read_text())["pid"])
        AZURITE_STATE.unlink()
    print("azurite stopped")
    return 0


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stemgen-dev", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = parser.add_subparsers(dest="group", required=True)
    for group, up, down in (("cluster", _cluster_up, _cluster_down), ("azurite", _azurite_up, _azurite_down)):
        actions = groups.add_parser(group).add_subparsers(dest="action", required=True)
        actions.add_parser("up").set_defaults(func=up)
        actions.add_parser("down").set_defaults(func=down)
    args = parser.parse_args(argv)
    STATE_DIR.mkdir(exist_ok=True)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(cli())
