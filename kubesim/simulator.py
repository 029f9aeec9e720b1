"""A whole simulated cluster: the store, the HTTP API server and the simulated controllers on one event loop,
optionally in a background thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web

from kubesim.controllers import Controllers, ControllerSettings, KmmController, start_controllers
from kubesim.disruption import DisruptionController
from kubesim.errors import ApiError
from kubesim.server import ApiServer, FaultSettings
from kubesim.store import CRD_RESOURCE, EvictedPod, Store

T = TypeVar("T")
JsonObject = dict[str, Any]

BUILTIN_CRD_DIR = Path(__file__).parent / "crds"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def load_yaml_documents(path: Path) -> list[JsonObject]:
    with path.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if isinstance(doc, dict)]


def crd_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories into their ``*.yaml`` files, sorted."""
    files: list[Path] = []
    for entry in paths:
        path = Path(entry)
        files.extend(sorted(path.glob("*.yaml")) if path.is_dir() else [path])
    return files


class KmmFaults:
    """Load failures of the simulated KMM, injected from any thread (see ``kubesim.controllers.kmm``)."""

    def __init__(self, simulator: Simulator) -> None:
        self._simulator = simulator

    def fail_load(self, node: str, version: str | None = None) -> None:
        """Loads of that module version on the node fail (any version when None) until cleared."""
        self._simulator.call(lambda: self._controller().fail_load(node, version))

    def clear_load_failure(self, node: str, version: str | None = None) -> None:
        """Lift the failure of that node and version (every failure on the node when None)."""
        self._simulator.call(lambda: self._controller().clear_load_failure(node, version))

    def _controller(self) -> KmmController:
        controllers = self._simulator.controllers
        if controllers is None or controllers.kmm is None:
            raise RuntimeError("the simulated KMM controller is not running")
        return controllers.kmm


class Simulator:
    """A simulated cluster served over HTTP.

    Use ``start()``/``stop()`` (or ``with``) to run it in a background thread with its own event loop, or
    ``await start_async()``/``await stop_async()`` to run it on the current loop. ``call`` runs a function on the
    simulator's loop, where the store and the controllers live.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        nodes: str | int | None = None,
        crds: Iterable[str | Path] = (),
        controllers: ControllerSettings | None = None,
        run_controllers: bool = True,
        bookmark_interval: float = 10.0,
        history_limit: int = 20_000,
    ) -> None:
        self.host = host
        self.port = port
        self.node_spec = nodes
        self.crd_paths = crd_files([BUILTIN_CRD_DIR, *crds])
        self.controller_settings = controllers
        self.run_controllers = run_controllers
        self.store = Store(history_limit=history_limit)
        self.faults = FaultSettings()
        self.server = ApiServer(self.store, bookmark_interval=bookmark_interval, faults=self.faults)
        self.controllers: Controllers | None = None
        self.kmm = KmmFaults(self)
        self.disruption: DisruptionController | None = None
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    # --- lifecycle -----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the simulator is not running")
        return self._loop

    async def start_async(self) -> None:
        """Register CRDs, create the system namespaces and nodes, serve HTTP and start the controllers."""
        self._loop = asyncio.get_running_loop()
        for name in SYSTEM_NAMESPACES:
            self.store.create("v1/namespaces", {"metadata": {"name": name}})
        for path in self.crd_paths:
            for document in load_yaml_documents(path):
                if document.get("kind") == "CustomResourceDefinition":
                    self.apply_object(document)
        if self.node_spec is not None:
            self.add_nodes(self.node_spec)
        self._start_controllers()
        self._runner = web.AppRunner(self.server.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]

    def _start_controllers(self) -> None:
        if not self.run_controllers:
            return
        self.disruption = DisruptionController(self.store, asyncio.get_running_loop())
        settings = self.controller_settings or ControllerSettings()
        self.store.graceful_pod_deletion = settings.kubelet
        self.controllers = start_controllers(self.store, settings)

    async def stop_async(self) -> None:
        if self.disruption is not None:
            self.disruption.stop()
            self.disruption = None
        if self.controllers is not None:
            self.controllers.stop()
            self.controllers = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self) -> Simulator:
        """Run in a background thread; returns once the server accepts connections."""
        started: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._stopped = asyncio.Event()

            async def main() -> None:
                try:
                    await self.start_async()
                except BaseException as error:
                    started.set_exception(error)
                    return
                started.set_result(None)
                assert self._stopped is not None
                await self._stopped.wait()
                await self.stop_async()

            try:
                loop.run_until_complete(main())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="kubesim", daemon=True)
        self._thread.start()
        started.result(timeout=30)
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None or self._stopped is None:
            return
        self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``function(*args, **kwargs)`` on the simulator's loop and return its result (thread-safe)."""
        loop = self.loop
        if self._thread is None or threading.current_thread() is self._thread:
            return function(*args, **kwargs)

        async def run() -> T:
            return function(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=60)

    # --- cluster content -----------------------------------------------------------------------------

    def apply_object(self, obj: JsonObject) -> JsonObject:
        """Create an object from a manifest, or replace the existing one (on the simulator's loop)."""
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        resource_type = self.store.find_type(api_version, kind)
        if resource_type is None:
            raise ApiError(404, "NotFound", f"no resource of kind {kind} in {api_version}")
        meta = obj.get("metadata") or {}
        existing = self.store.get(resource_type.key, meta.get("namespace"), meta.get("name", ""))
        if existing is None:
            return self.store.create(resource_type.key, obj)
        replacement = {**obj, "metadata": {**meta, "resourceVersion": existing["metadata"]["resourceVersion"]}}
        return self.store.update(resource_type.key, replacement)

    def add_nodes(self, spec: str | int) -> list[JsonObject]:
        """Create the nodes of a compact node spec (see ``kubesim.nodes``)."""
        from kubesim.nodes import nodes_from_spec

        def create_all() -> list[JsonObject]:
            return [self.store.create("v1/nodes", node) for node in nodes_from_spec(spec)]

        if self._loop is None or threading.current_thread() is self._thread or self._thread is None:
            return create_all()
        return self.call(create_all)

    def register_crd(self, path: str | Path) -> list[JsonObject]:
        return self.call(lambda: [self.apply_object(doc) for doc in load_yaml_documents(Path(path))])

    def crd_names(self) -> list[str]:
        return [crd["metadata"]["name"] for crd in self.call(self.store.list, CRD_RESOURCE)]

    def compact(self) -> None:
        """Forget watch history: watches from an older resourceVersion then get 410 Gone."""
        self.call(self.store.compact)

    def evictions(self) -> dict[EvictedPod, int]:
        """How many times an eviction succeeded, per pod (dry runs and refused evictions are not counted)."""
        return self.call(lambda: dict(self.store.evictions))

    def drop_watches(self) -> None:
        self.call(self.server.drop_watches)

    def write_kubeconfig(self, path: str | Path, *, namespace: str = "default") -> Path:
        path = Path(path)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kubesim", "cluster": {"server": self.url}}],
            "users": [{"name": "kubesim", "user": {"token": "kubesim"}}],
            "contexts": [
                {"name": "kubesim", "context": {"cluster": "kubesim", "user": "kubesim", "namespace": namespace}}
            ],
            "current-context": "kubesim",
            "preferences": {},
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path
