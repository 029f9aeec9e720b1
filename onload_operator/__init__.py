"""The Onload operator: reconciles ``Onload`` CRs into KMM Modules, the device-plugin DaemonSet and node labels.

Layers (enforced by import-linter): ``api`` (pydantic models), ``render`` and ``planner`` (pure), ``adapter`` (the
only module that calls the Kubernetes API), ``handlers`` (kopf wiring), ``runtime`` and ``__main__`` (processes).
"""
