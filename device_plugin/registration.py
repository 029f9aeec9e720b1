"""Registration with the kubelet, raced against the plugin directory so that it never waits on a dead socket.

A kubelet that dies right after creating ``kubelet.sock`` leaves the socket behind, and the next kubelet deletes
every socket in the directory (ours too) before it listens. A Register sent meanwhile reaches the new kubelet,
which then dials our deleted socket and blocks for its 10 s dial timeout, during which the node has no devices.
So an attempt is cancelled as soon as our socket is no longer ours or ``kubelet.sock`` is replaced, the socket is
checked again right after the channel is ready and before Register is sent, and the caller starts over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging

import grpc

from device_plugin.config import PluginConfig
from device_plugin.metrics import PluginMetrics
from device_plugin.plugin_socket import PluginSocket, SocketIdentity, SocketState, socket_identity
from device_plugin.servicer import PLUGIN_OPTIONS, RESOURCE_NAME
from device_plugin.v1beta1 import api_pb2 as pb
from device_plugin.v1beta1 import api_pb2_grpc as pb_grpc
from device_plugin.watch import DirectoryWatch

log = logging.getLogger(__name__)

API_VERSION = "v1beta1"
# The kubelet dials back with a 10 s timeout inside Register, so our deadline must be longer.
REGISTER_TIMEOUT = 15.0
CONNECT_TIMEOUT = 5.0
RECHECK_INTERVAL = 5.0
"""Longest time between two looks at the sockets when no inotify event comes (the safety net)."""
BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 5.0
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class _Attempt(enum.Enum):
    ACCEPTED = "accepted"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    """Our socket or the kubelet's changed during the attempt: start over without delay."""


class _SocketLostError(Exception):
    """Our socket stopped being ours between connecting and sending Register."""


class Registrar:
    """Registers ``socket`` with the kubelet of ``config``'s directory, watched through ``watch``."""

    def __init__(
        self, config: PluginConfig, metrics: PluginMetrics, socket: PluginSocket, watch: DirectoryWatch
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._socket = socket
        self._watch = watch
        self.registrations = 0

    def kubelet_replaced(self, kubelet: SocketIdentity) -> bool:
        """True once ``kubelet.sock`` is not the file ``kubelet`` identified, or was created again since."""
        created = self._config.kubelet_socket_name in self._watch.take_created()
        return created or socket_identity(self._config.kubelet_socket_path) != kubelet

    async def register(self) -> SocketIdentity | None:
        """Register, retrying while the kubelet is absent or refuses; None once our socket is not ours."""
        delay = BACKOFF_INITIAL
        waiting_logged = False
        while self._socket.state() is SocketState.OURS:
            kubelet = socket_identity(self._config.kubelet_socket_path)
            if kubelet is None:
                if not waiting_logged:
                    log.info("waiting for the kubelet socket %s", self._config.kubelet_socket_path)
                    waiting_logged = True
                await self._watch.wait(RECHECK_INTERVAL)
                continue
            self._watch.take_created()  # creations seen until now made the kubelet socket we are about to use
            outcome = await self._attempt(kubelet, delay)
            if outcome is _Attempt.ACCEPTED:
                return kubelet
            if outcome is _Attempt.FAILED:
                await self._watch.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX)
        return None

    async def _attempt(self, kubelet: SocketIdentity, delay: float) -> _Attempt:
        register = asyncio.create_task(self._register_once(), name="register")
        try:
            while True:
                wake = asyncio.create_task(self._watch.wait(RECHECK_INTERVAL), name="register-watch")
                try:
                    await asyncio.wait({register, wake}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    wake.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await wake
                if register.done():
                    return self._outcome(register, delay)
                if self._socket.state() is not SocketState.OURS or self.kubelet_replaced(kubelet):
                    log.info("kubelet or plugin socket replaced during registration: starting over")
                    return _Attempt.SUPERSEDED
        finally:
            if not register.done():
                register.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await register

    def _outcome(self, register: asyncio.Task[None], delay: float) -> _Attempt:
        error = register.exception()
        if isinstance(error, _SocketLostError):
            return _Attempt.SUPERSEDED
        if isinstance(error, grpc.aio.AioRpcError | TimeoutError):
            self._metrics.registrations.labels("error").inc()
            detail = error.details() if isinstance(error, grpc.aio.AioRpcError) else "kubelet did not answer"
            log.warning("registration failed, retrying in %.1f s: %s", delay, detail)
            return _Attempt.FAILED
        if error is not None:
            raise error
        self._metrics.registrations.labels("ok").inc()
        self.registrations += 1
        log.info("registered %s with the kubelet", RESOURCE_NAME, extra={"endpoint": self._config.socket_name})
        return _Attempt.ACCEPTED

    async def _register_once(self) -> None:
        request = pb.RegisterRequest(
            version=API_VERSION,
            endpoint=self._config.socket_name,
            resource_name=RESOURCE_NAME,
            options=PLUGIN_OPTIONS,
        )
        async with grpc.aio.insecure_channel(
            f"unix:{self._config.kubelet_socket_path}", options=_CHANNEL_OPTIONS
        ) as channel:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await channel.channel_ready()
            if self._socket.state() is not SocketState.OURS:
                raise _SocketLostError
            await pb_grpc.RegistrationStub(channel).Register(request, timeout=REGISTER_TIMEOUT)
