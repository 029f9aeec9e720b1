"""The in-process contract between kubesim's API server and its simulated controllers.

Resources are named ``<group>/<version>/<plural>``, with the core group written as ``v1/<plural>``:
``v1/pods``, ``v1/nodes``, ``apps/v1/daemonsets``, ``policy/v1/poddisruptionbudgets``,
``kmm.sigs.x-k8s.io/v1beta1/modules``. All methods run on the simulator's event loop thread; they are synchronous,
apply the same semantics as the HTTP API (resourceVersion, generation, defaults, finalizers, GC) and raise
:class:`kubesim.errors.ApiError` on failure.
"""

from collections.abc import Callable
from typing import Any, Literal, Protocol, TypedDict

JsonObject = dict[str, Any]


class WatchEvent(TypedDict):
    """One committed change, delivered to subscribers after it is stored."""

    type: Literal["ADDED", "MODIFIED", "DELETED"]
    resource: str
    object: JsonObject


class ObjectStore(Protocol):
    def get(self, resource: str, namespace: str | None, name: str) -> JsonObject | None:
        """The stored object, or None when absent."""

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[JsonObject]:
        """Objects matching the selectors (Kubernetes selector syntax), across namespaces when None."""

    def create(self, resource: str, obj: JsonObject) -> JsonObject:
        """Store a new object (409 AlreadyExists when the name is taken)."""

    def update(self, resource: str, obj: JsonObject, *, subresource: str | None = None) -> JsonObject:
        """Replace an object; a set metadata.resourceVersion must match (409 Conflict otherwise).

        With ``subresource="status"`` only the status changes; without it the status is kept.
        """

    def merge_patch(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        patch: JsonObject,
        *,
        subresource: str | None = None,
    ) -> JsonObject:
        """Apply an RFC 7386 JSON merge patch."""

    def delete(self, resource: str, namespace: str | None, name: str) -> None:
        """Delete with background propagation (finalizers honoured: sets deletionTimestamp instead)."""

    def subscribe(self, resource: str, callback: Callable[[WatchEvent], None]) -> Callable[[], None]:
        """Call ``callback`` on the loop after every committed change of ``resource``; returns unsubscribe."""
