"""`aiops-operator`: run the operator, or print the generated CRD, RBAC rules or settings table."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
import urllib.parse
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiops_operator.settings import OperatorSettings


def _run(args: argparse.Namespace) -> int:
    import kopf

    from aiops_operator import drift_poller, handlers, logs, operator_metrics
    from aiops_operator.memo import Operator
    from aiops_operator.settings import OperatorSettings

    config = OperatorSettings()
    if args.namespace:
        config = config.model_copy(update={"namespaces": ",".join(args.namespace)})
    if args.liveness is not None:
        config = config.model_copy(update={"liveness_endpoint": args.liveness})
    # Resolved once: the namespace whose pods (this operator) the NetworkPolicies let in.
    config = config.model_copy(update={"operator_namespace": config.own_namespace()})
    registry = kopf.OperatorRegistry()
    handlers.register(registry)
    drift_poller.register(registry)
    logs.configure(config.log_format, config.verbose or args.verbose)
    busy = liveness_port_taken(config.liveness_endpoint)
    if busy:
        return _refuse(
            f"the liveness endpoint {config.liveness_endpoint} cannot listen: {busy}"
            " (AIOPS_OPERATOR_LIVENESS_ENDPOINT or --liveness)"
        )
    try:
        metrics_server = operator_metrics.serve(config.metrics_port)
    except OSError as exc:
        return _refuse(
            f"the metrics port {config.metrics_port} cannot listen: {exc.strerror}"
            " (AIOPS_OPERATOR_METRICS_PORT)"
        )
    memo = Operator.create(config, metrics_server)
    namespaces = config.namespace_list()
    # Standalone: no Kopf peering (it pauses peers or warns, it does not elect); with leader
    # election on, only the replica holding the Lease runs Kopf at all.
    options: dict[str, Any] = dict(
        registry=registry,
        memo=memo,
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=config.liveness_endpoint or None,
    )
    if not config.leader_election:
        operator_metrics.LEADER.set(1)
        kopf.run(**options)
        return 0
    return asyncio.run(_run_elected(config, options))


async def _run_elected(config: OperatorSettings, options: dict[str, Any]) -> int:
    import kopf

    from aiops_operator.kube import KubeClient
    from aiops_operator.leader import LeaderElector, run_elected

    namespace = config.leader_election_namespace or config.operator_namespace
    if not namespace:
        return _refuse(
            "leader election needs the Lease's namespace:"
            " set AIOPS_OPERATOR_LEADER_ELECTION_NAMESPACE (or AIOPS_OPERATOR_OPERATOR_NAMESPACE)"
        )
    elector = LeaderElector(
        KubeClient(timeout_s=config.request_timeout_s, max_connections=2),
        namespace=namespace,
        name=config.leader_election_lease_name,
        identity=f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}",
        duration_s=config.leader_election_lease_duration_s,
        renew_deadline_s=config.leader_election_renew_deadline_s,
        retry_s=config.leader_election_retry_period_s,
    )
    return await run_elected(elector, lambda: kopf.operator(**options), config.liveness_endpoint)


def _refuse(message: str) -> int:
    """End the operator before it starts: one line on stderr and in the log, exit status 2."""
    logging.getLogger("aiops_operator").error(message)
    return 2


def liveness_port_taken(endpoint: str) -> str | None:
    """Why the liveness endpoint's host:port cannot be bound now (e.g. `Address already in
    use`), or None. Kopf would otherwise keep running without a probe answering."""
    if not endpoint:
        return None
    url = urllib.parse.urlsplit(endpoint)
    host, port = url.hostname or "0.0.0.0", url.port or 80
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds it
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


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
