"""The operator's only talk with the Kubernetes API: reads for the reconciler, and the executor of planned actions."""
