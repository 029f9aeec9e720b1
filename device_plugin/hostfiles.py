"""``onload-host-files``: put the Onload user-space files on the host, and take away only what no container needs.

Layout under the host directory (``hostOnloadPath``)::

    .onload-<digest>/usr/...        one complete version per directory, named by a digest of its content
    usr -> .onload-<digest>/usr     one symbolic link per top-level entry, to the current version
    .onload-manifest.json           what the plugin wrote: versions, links, the current version

``install`` writes a new version aside (under a temporary name, then renamed) and swaps each link with a rename,
so the host always shows one whole version; Allocate resolves the ``usr`` link once and answers with paths
inside that version's directory, so every container gets one whole version even while a swap happens.

The device plugin, when it stops (its gRPC server closed, so no Allocate can name a version any more), and
``remove-unused`` remove the versions that no container on the node may need (see ``device_plugin.host_usage``),
and only what the manifest lists: never a file the plugin did not write. ``install`` removes them too, but keeps
the version it replaces, which an answer given just before the swap may name. A plugin pod deleted and
re-created on a node with Onload pods therefore leaves their files in place, and a workload container that
restarts later finds every path of its cached Allocate answer.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

from device_plugin.allocation import INSTALLED_VERSION_PREFIX, go_join
from device_plugin.host_usage import CHECKPOINT_NAME, cached_answers, mapped_files
from device_plugin.hostfs import file_identity
from device_plugin.logs import configure_logging

log = logging.getLogger("onload_host_files")

MANIFEST_NAME = ".onload-manifest.json"
RESOURCE_NAME = "amd.com/onload"
DEFAULT_CHECKPOINT = f"/var/lib/kubelet/device-plugins/{CHECKPOINT_NAME}"


class InstallError(RuntimeError):
    """The host directory holds something the plugin did not write where it must put a link."""


@dataclass
class Manifest:
    current: str | None = None
    versions: list[str] = field(default_factory=list)
    """Version directories, oldest first."""
    links: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    """Directories being written: removed by the next run if a crash left them."""


def read_manifest(target: str) -> Manifest | None:
    try:
        with open(os.path.join(target, MANIFEST_NAME), encoding="utf-8") as handle:
            return Manifest(**json.load(handle))
    except FileNotFoundError:
        return None


def write_manifest(target: str, manifest: Manifest) -> None:
    temporary = os.path.join(target, f"{MANIFEST_NAME}.{secrets.token_hex(4)}")
    with open(temporary, "w", encoding="utf-8") as out:
        json.dump(asdict(manifest), out, indent=2, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, os.path.join(target, MANIFEST_NAME))


def tree_digest(source: str) -> str:
    """A digest of the names, modes, link targets and contents below ``source``."""
    digest = hashlib.sha256()
    for directory, dirnames, filenames in os.walk(source):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(directory, d))]):
            path = os.path.join(directory, name)
            stat = os.lstat(path)
            digest.update(f"{os.path.relpath(path, source)}\0{stat.st_mode:o}\0".encode())
            if os.path.islink(path):
                digest.update(os.readlink(path).encode())
            else:
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
    return digest.hexdigest()[:16]


def _files(root: str) -> Iterator[str]:
    for directory, _, filenames in os.walk(root):
        for name in filenames:
            yield os.path.join(directory, name)


def _swap_link(target: str, entry: str, version: str) -> None:
    temporary = os.path.join(target, f".{entry}.link-{secrets.token_hex(4)}")
    os.symlink(f"{version}/{entry}", temporary)
    os.replace(temporary, os.path.join(target, entry))


def install(source: str, target: str, checkpoint: str, proc_root: str) -> str:
    """Install the tree ``source`` into ``target`` as the current version; return the version directory."""
    os.makedirs(target, exist_ok=True)
    manifest = read_manifest(target) or Manifest()
    entries = sorted(os.listdir(source))
    foreign = [e for e in entries if os.path.lexists(os.path.join(target, e)) and e not in manifest.links]
    if foreign:
        raise InstallError(
            f"{', '.join(os.path.join(target, e) for e in foreign)} exist but were not written by the device "
            "plugin (no manifest lists them); remove them once no container uses them"
        )
    version = INSTALLED_VERSION_PREFIX + tree_digest(source)
    if version not in manifest.versions or not os.path.isdir(os.path.join(target, version)):
        partial = f"{version}.partial-{secrets.token_hex(4)}"
        manifest.partial.append(partial)
        write_manifest(target, manifest)
        shutil.copytree(source, os.path.join(target, partial), symlinks=True)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(os.path.join(target, version))  # a leftover of a version the manifest lost track of
        os.rename(os.path.join(target, partial), os.path.join(target, version))
        manifest.partial.remove(partial)
        manifest.versions = [v for v in manifest.versions if v != version] + [version]
    manifest.links = sorted(set(manifest.links) | set(entries))
    write_manifest(target, manifest)  # links recorded before they exist: a crash leaves nothing unlisted
    for entry in entries:
        _swap_link(target, entry, version)
    for stale in set(manifest.links) - set(entries):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(target, stale))
    previous, manifest.links, manifest.current = manifest.current, entries, version
    write_manifest(target, manifest)
    log.info("installed %s as %s", source, os.path.join(target, version))
    remove_unused(target, checkpoint, proc_root, keep={version, previous or version})
    return version


def _needed_versions(target: str, manifest: Manifest, checkpoint: str, proc_root: str) -> set[str] | None:
    """The version directories some container may need; None when that cannot be known (keep them all)."""
    answers = cached_answers(checkpoint, RESOURCE_NAME)
    if not answers.readable:
        return None
    needed = set()
    root = go_join(target)
    for path in answers.host_paths:
        relative = os.path.relpath(go_join(path), root)
        first = relative.split(os.sep, 1)[0]
        if first in manifest.versions:
            needed.add(first)
        elif first in manifest.links and manifest.current is not None:
            needed.add(manifest.current)  # an answer that names the link itself
    identities = {}
    for version in manifest.versions:
        for path in _files(os.path.join(target, version)):
            identity = file_identity(path)
            if identity is not None:
                identities[identity] = version
    needed.update(identities[identity] for identity in mapped_files(proc_root, identities))
    return needed


def remove_unused(
    target: str, checkpoint: str, proc_root: str, keep: frozenset[str] | set[str] = frozenset()
) -> list[str]:
    """Remove the versions (with the current one, the links too) that no container may need, except ``keep``;
    return the names removed."""
    manifest = read_manifest(target)
    if manifest is None:
        log.info("no %s in %s: the device plugin wrote nothing there", MANIFEST_NAME, target)
        return []
    needed = _needed_versions(target, manifest, checkpoint, proc_root)
    if needed is None:
        return []
    needed |= set(keep)
    unused = [version for version in manifest.versions if version not in needed]
    removed = []
    if manifest.current in unused:
        for entry in manifest.links:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(target, entry))
            removed.append(entry)
        manifest.links, manifest.current = [], None
        write_manifest(target, manifest)
    for name in unused + manifest.partial:
        shutil.rmtree(os.path.join(target, name), ignore_errors=True)
        removed.append(name)
    manifest.versions = [version for version in manifest.versions if version in needed]
    manifest.partial = []
    if manifest.versions:
        write_manifest(target, manifest)
    else:
        os.unlink(os.path.join(target, MANIFEST_NAME))
    kept = sorted(needed & set(manifest.versions))
    log.info("removed %s; kept %s (needed by containers of this node)", removed or "nothing", kept or "nothing")
    return removed


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="onload-host-files", description="Install the Onload user-space files on the host, remove unused ones."
    )
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="the kubelet's device-manager checkpoint")
    parser.add_argument("--proc", default="/proc", help="the host's /proc (the pod runs with hostPID)")
    commands = parser.add_subparsers(dest="command", required=True)
    install_command = commands.add_parser("install", help="install SOURCE into TARGET as the current version")
    install_command.add_argument("source")
    install_command.add_argument("target")
    remove_command = commands.add_parser("remove-unused", help="remove what no container on the node needs")
    remove_command.add_argument("target")
    args = parser.parse_args(argv)
    configure_logging("json", "info")
    try:
        if args.command == "install":
            install(args.source, args.target, args.checkpoint, args.proc)
        else:
            remove_unused(args.target, args.checkpoint, args.proc)
    except (InstallError, OSError) as exc:
        log.error("%s failed: %s", args.command, exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
