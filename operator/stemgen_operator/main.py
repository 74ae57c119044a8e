"""`stemgen-operator`: validate the settings, set up logging, run kopf with our handlers."""

from __future__ import annotations

import argparse
import json
import logging
import sys

import kopf

from . import handlers
from .settings import OperatorSettings, SettingsError, load_settings

LOG_FORMATS = {"json": kopf.LogFormat.JSON, "plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="stemgen-operator",
        description="Run the StemGeneration operator. Settings come from STEMGEN_OPERATOR_* environment variables.")
    parser.add_argument("-n", "--namespace", action="append", default=[],
                        help="watch this namespace (repeatable); overrides STEMGEN_OPERATOR_NAMESPACES")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--check-settings", action="store_true",
                        help="validate the settings, print them as JSON and exit")
    return parser.parse_args(argv)


def run(settings: OperatorSettings, verbose: bool = False) -> None:
    kopf.configure(verbose=verbose, log_format=LOG_FORMATS[settings.log_format], log_refkey="k8s")
    if not verbose:
        # One "Handler ... succeeded" line per watch event, and one per liveness probe, would bury
        # the transitions (which the operator logs itself); failures still come through.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    liveness = f"http://0.0.0.0:{settings.liveness_port}/healthz" if settings.liveness_port else None
    kopf.run(
        registry=kopf.get_default_registry(),
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        standalone=settings.standalone,
        peering_name=settings.peering_name,
        liveness_endpoint=liveness,
        memo=kopf.Memo(**{handlers.SETTINGS_KEY: settings}),
    )


def cli(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = {"namespaces": args.namespace} if args.namespace else {}
    try:
        settings = load_settings(**overrides)
    except SettingsError as error:
        print(f"stemgen-operator: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.check_settings:
        print(json.dumps(settings.model_dump(mode="json", by_alias=False), indent=2, sort_keys=True))
        return
    run(settings, verbose=args.verbose)


if __name__ == "__main__":
    cli()
