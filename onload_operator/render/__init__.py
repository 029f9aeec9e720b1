"""Pure builders: an Onload CR to its child manifests, and the names and label keys they share."""
