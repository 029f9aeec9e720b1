"""``onload-operator``: run the operator for the Onload CRs of all (or some) namespaces."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

import kopf
from kubernetes.config import ConfigException

from onload_operator.config import OperatorConfig
from onload_operator.runtime import run_operator

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(message)s"
"""kopf's own plain format has no time: a line without one is little use when reading an incident."""
LOG_FORMATS: dict[str, kopf.LogFormat | str] = {
    "json": kopf.LogFormat.JSON,
    "plain": PLAIN_FORMAT,
    "full": kopf.LogFormat.FULL,
}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="onload-operator",
        description="Reconcile Onload CRs into KMM Modules, the device-plugin DaemonSet and node labels. "
        "The device-plugin image comes from the DEVICE_PLUGIN_IMG environment variable (required).",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="serve the Onload CRs of this namespace only (repeatable; default: all namespaces)",
    )
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8081/healthz",
        help="liveness endpoint URL (default: %(default)s; 'none' disables it)",
    )
    parser.add_argument("--metrics-port", type=int, default=8080, help="port of /metrics, -1 disables (default: 8080)")
    parser.add_argument("--metrics-address", default="0.0.0.0", help="address of /metrics (default: %(default)s)")
    parser.add_argument("--log-format", choices=sorted(LOG_FORMATS), default="json", help="default: %(default)s")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=300.0,
        help="reconcile every CR at least this often (default: %(default)s)",
    )
    parser.add_argument(
        "--recheck-seconds",
        type=float,
        default=2.0,
        help="while nodes wait in an upgrade step on pods, reconcile their CR this often (default: %(default)s)",
    )
    parser.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("POD_NAMESPACE") or None,
        help="namespace of the leader Lease; only its holder acts (default: $POD_NAMESPACE, else no election)",
    )
    parser.add_argument(
        "--leader-lease-seconds",
        type=int,
        default=15,
        help="a leader that has not renewed the Lease for this long loses it (default: %(default)s)",
    )
    parser.add_argument(
        "--watch-stuck-seconds",
        type=float,
        default=900.0,
        help="fail the liveness probe when a watch hears nothing for this long outside an API outage "
        "(default: %(default)s)",
    )
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, else KUBECONFIG)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    image = os.environ.get("DEVICE_PLUGIN_IMG", "").strip()
    if not image:
        print(
            "onload-operator: the DEVICE_PLUGIN_IMG environment variable is empty or not set; "
            "set it to the Onload device-plugin image",
            file=sys.stderr,
        )
        sys.exit(1)
    # kopf.configure takes a format string as well as a LogFormat (its make_formatter matches both).
    kopf.configure(verbose=args.verbose, log_format=LOG_FORMATS[args.log_format])  # type: ignore[arg-type]
    config = OperatorConfig(
        device_plugin_image=image,
        kubeconfig=args.kubeconfig,
        namespaces=tuple(args.namespace),
        metrics_port=None if args.metrics_port < 0 else args.metrics_port,
        metrics_address=args.metrics_address,
        liveness_endpoint=None if args.liveness == "none" else args.liveness,
        leader_election_namespace=args.leader_election_namespace,
        leader_lease_seconds=args.leader_lease_seconds,
        resync_seconds=args.resync_seconds,
        recheck_seconds=args.recheck_seconds,
        watch_stuck_seconds=args.watch_stuck_seconds,
    )
    try:
        asyncio.run(run_operator(config))
    except ConfigException as exc:
        print(
            f"onload-operator: no Kubernetes API to connect to ({exc}); run it in a pod with a service account, "
            "or give a kubeconfig with --kubeconfig or KUBECONFIG",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
