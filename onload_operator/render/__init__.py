"""Pure builders: an Onload CR to its child manifests, node label keys, validation and status."""
