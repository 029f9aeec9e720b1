"""Which of the plugin's host files a container on this node may still need.

Two sources, both node-local (the device-plugin pod runs with the host's PID namespace):

- the kubelet's device-manager checkpoint, which keeps every Allocate answer of every container it admitted
  until the pod is gone, and hands that same answer to the runtime whenever the container restarts, without
  asking the plugin again; a stopped or crash-looping container has no process, but its entry is there;
- the memory maps of every process (``/proc/<pid>/maps``), matched by device and inode, for a process that
  loaded a library some other way.

An unreadable checkpoint means "everything may be needed": files are only ever kept by mistake, never removed.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from device_plugin.hostfs import FileIdentity, read_text
from device_plugin.v1beta1 import api_pb2 as pb

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "kubelet_internal_checkpoint"


@dataclass(frozen=True)
class CachedAnswers:
    """Host paths named by the kubelet's cached Allocate answers for one resource."""

    host_paths: frozenset[str]
    readable: bool
    """False when the checkpoint exists but cannot be read: then any file may be needed."""


def cached_answers(checkpoint_path: str, resource_name: str) -> CachedAnswers:
    """The host paths (mounts and device nodes) of every answer the kubelet keeps for ``resource_name``."""
    text = read_text(checkpoint_path)
    if text is None:
        if os.path.lexists(checkpoint_path):
            log.warning("cannot read the kubelet checkpoint %s: keeping every host file", checkpoint_path)
            return CachedAnswers(frozenset(), readable=False)
        return CachedAnswers(frozenset(), readable=True)
    try:
        entries = json.loads(text)["Data"]["PodDeviceEntries"] or []
        paths: set[str] = set()
        for entry in entries:
            if entry.get("ResourceName") != resource_name:
                continue
            answer = pb.ContainerAllocateResponse.FromString(base64.b64decode(entry.get("AllocResp") or ""))
            paths.update(mount.host_path for mount in answer.mounts)
            paths.update(device.host_path for device in answer.devices)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, DecodeError) as exc:
        log.warning("cannot parse the kubelet checkpoint %s (%s): keeping every host file", checkpoint_path, exc)
        return CachedAnswers(frozenset(), readable=False)
    return CachedAnswers(frozenset(paths), readable=True)


def mapped_files(proc_root: str, wanted: Iterable[FileIdentity]) -> frozenset[FileIdentity]:
    """Those of ``wanted`` that some process under ``proc_root`` has mapped into memory."""
    remaining = set(wanted)
    by_numbers = {(os.major(dev), os.minor(dev), inode): (dev, inode) for dev, inode in remaining}
    found: set[FileIdentity] = set()
    try:
        pids = [name for name in os.listdir(proc_root) if name.isdigit()]
    except OSError:
        return frozenset()
    for pid in pids:
        maps = read_text(os.path.join(proc_root, pid, "maps")) or ""
        for line in maps.splitlines():
            fields = line.split(maxsplit=5)
            if len(fields) < 6 or fields[4] == "0":
                continue
            major, _, minor = fields[3].partition(":")
            try:
                key = (int(major, 16), int(minor, 16), int(fields[4]))
            except ValueError:
                continue
            if key in by_numbers:
                found.add(by_numbers[key])
        if len(found) == len(remaining):
            break
    return frozenset(found)
