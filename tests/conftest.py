"""Shared pytest configuration: the kubesim fixtures (``kubesim``, ``kubesim_namespace``) for every tier."""

pytest_plugins = ["kubesim.testing"]
