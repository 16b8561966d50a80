"""`aiops-operator`: run the operator, or print the generated CRD, RBAC rules or settings table."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def _run(args: argparse.Namespace) -> int:
    import kopf

    from aiops_operator import drift_handlers, handlers  # registers the handlers with Kopf
    from aiops_operator.settings import OperatorSettings

    config = OperatorSettings()
    if args.namespace:
        config = config.model_copy(update={"namespaces": ",".join(args.namespace)})
    if args.liveness is not None:
        config = config.model_copy(update={"liveness_endpoint": args.liveness})
    # Resolved once: the namespace whose pods (this operator) the NetworkPolicies let in.
    config = config.model_copy(update={"operator_namespace": config.own_namespace()})
    handlers.STATE.config = config
    drift_handlers.register(config)
    log_format = {"json": kopf.LogFormat.JSON, "plain": kopf.LogFormat.PLAIN}.get(
        config.log_format, kopf.LogFormat.FULL
    )
    verbose = config.verbose or args.verbose
    kopf.configure(verbose=verbose, log_format=log_format)
    if not verbose:
        # Kopf logs "Handler ... succeeded" for every watch event of every child; keep its
        # per-object logs to warnings and errors, and the operator's own decisions at INFO.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    namespaces = config.namespace_list()
    # Standalone: no peering objects to install or permit, so run one replica at a time.
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=config.liveness_endpoint or None,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `aiops-operator` console script."""
    parser = argparse.ArgumentParser(prog="aiops-operator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="Run the operator against the current kubeconfig/cluster.")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        help="Serve only this namespace (repeatable); default: all namespaces.",
    )
    run.add_argument("--liveness", help="Liveness endpoint URL; '' disables it.")
    run.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    sub.add_parser("generate-crd", help="Print the ModelService CRD (YAML).")
    sub.add_parser("generate-rbac", help="Print the ClusterRole rules (YAML list).")
    sub.add_parser("settings-table", help="Print the settings as a Markdown table.")
    args = parser.parse_args(argv)

    if args.command == "run":
        return _run(args)
    if args.command == "generate-crd":
        from aiops_operator.crd import render_crd

        sys.stdout.write(render_crd())
    elif args.command == "generate-rbac":
        from aiops_operator.rbac import render_rules

        sys.stdout.write(render_rules())
    else:
        from aiops_operator.settings import settings_table

        sys.stdout.write(settings_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
