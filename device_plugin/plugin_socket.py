"""The plugin's unix socket, created so that the plugin alone decides when it goes away.

gRPC binds a private temporary name beside the final one, the plugin records the inode it got, checks that the
server answers there, and renames it into place. gRPC's own clean-up on shutdown then removes only the temporary
name (long gone), and the plugin unlinks the final name only while it still holds the inode it created: a
second instance that replaced the socket (a rolling update, a manual run) keeps its socket when the first stops.

A socket is identified by device and inode only: a chmod, chown or xattr change is not a new socket.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import secrets

import grpc

from device_plugin.hostfs import FileIdentity, file_identity
from device_plugin.servicer import PLUGIN_OPTIONS
from device_plugin.v1beta1 import api_pb2 as pb
from device_plugin.v1beta1 import api_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SELF_CHECK_TIMEOUT = 2.0

SocketIdentity = FileIdentity


def socket_identity(path: str) -> SocketIdentity | None:
    return file_identity(path, follow_symlinks=False)


class SocketState(enum.Enum):
    OURS = "ours"
    GONE = "gone"
    """Deleted or never created: a kubelet restart deletes every socket in the directory."""
    TAKEN = "taken"
    """Another file is there now: only another plugin instance creates this name."""


class PluginSocket:
    """``path`` served by one gRPC server at a time, created and removed by this object only."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.identity: SocketIdentity | None = None
        self._temporary: str | None = None

    def bind(self, server: grpc.aio.Server) -> None:
        """Make ``server`` listen on a fresh temporary name; call before ``server.start()``."""
        directory, name = os.path.split(self.path)
        self._temporary = os.path.join(directory, f".{name}.{secrets.token_hex(4)}")
        server.add_insecure_port(f"unix:{self._temporary}")

    async def publish(self) -> None:
        """Check that the started server answers, then rename its socket into place and remember its inode."""
        temporary = self._temporary
        assert temporary is not None, "bind() first"
        identity = socket_identity(temporary)
        if identity is None:
            raise OSError(f"the socket {temporary} vanished before it was published")
        try:
            async with grpc.aio.insecure_channel(f"unix:{temporary}") as channel:
                options = await pb_grpc.DevicePluginStub(channel).GetDevicePluginOptions(
                    pb.Empty(), timeout=SELF_CHECK_TIMEOUT
                )
            if options != PLUGIN_OPTIONS:
                raise RuntimeError(f"another server answers on {temporary}")
            os.rename(temporary, self.path)
        except BaseException:
            self._discard_temporary()
            raise
        self._temporary = None
        self.identity = identity

    def state(self) -> SocketState:
        current = socket_identity(self.path)
        if self.identity is not None and current == self.identity:
            return SocketState.OURS
        return SocketState.GONE if current is None else SocketState.TAKEN

    def remove(self) -> None:
        """Unlink the socket if it is still the one this object created; forget it either way."""
        if self.state() is SocketState.OURS:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        self._discard_temporary()
        self.identity = None

    def _discard_temporary(self) -> None:
        if self._temporary is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temporary)
            self._temporary = None
