"""The Onload operator: reconciles ``Onload`` CRs into KMM Modules, the device-plugin DaemonSet and node labels.

Layers, top to bottom (enforced by import-linter, see docs/architecture.md): ``runtime`` and ``__main__``
(processes), ``handlers`` (kopf wiring), ``reconciler`` (one pass: cache, planner, executor), ``io`` (the only
package that calls the Kubernetes API), ``planner`` and ``upgrade`` (pure decisions), ``actions`` and ``observed``
(the writes as values, the observed objects as values), ``render`` (pure builders), ``api`` (pydantic models).
"""
