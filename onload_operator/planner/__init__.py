"""Pure decisions: from the observed cluster to the next writes (no Kubernetes client, no kopf)."""
