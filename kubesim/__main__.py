"""``python -m kubesim serve``: run a simulated cluster until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from kubesim.errors import ApiError
from kubesim.simulator import Simulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kubesim", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a simulated cluster over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port")
    serve.add_argument(
        "--nodes",
        "--node-spec",
        dest="nodes",
        default="3",
        help="a node count or a compact node spec such as 'worker-[0-9]:kernel=5.14.0:labels=a=b' (see kubesim.nodes)",
    )
    serve.add_argument("--kubeconfig", type=Path, default=Path("kubesim.kubeconfig"), help="where to write it")
    serve.add_argument(
        "--crd", action="append", default=[], type=Path, help="a CRD file or a directory of them (repeatable)"
    )
    serve.add_argument("--no-controllers", action="store_true", help="run without the simulated controllers")
    serve.add_argument("--verbose", "-v", action="store_true")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    sim = Simulator(
        host=args.host,
        port=args.port,
        nodes=args.nodes,
        crds=args.crd,
        run_controllers=not args.no_controllers,
    )
    await sim.start_async()
    kubeconfig = sim.write_kubeconfig(args.kubeconfig)
    print(f"kubesim serving at {sim.url}", flush=True)
    print(f"kubeconfig written to {kubeconfig.resolve()}", flush=True)
    print(f"export KUBECONFIG={kubeconfig.resolve()}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await sim.stop_async()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    try:
        asyncio.run(_serve(args))
    except (ValueError, OSError, ApiError) as error:
        print(f"kubesim: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
