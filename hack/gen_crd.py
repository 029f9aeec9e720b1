"""Write the Onload CRD generated from the API models (``make manifests``)."""

import sys
from pathlib import Path

import yaml

from onload_operator.api.crd import onload_crd

HEADER = "# Generated from onload_operator/api/v1alpha1.py by `make manifests`. Do not edit.\n"


class _NoAliasDumper(yaml.SafeDumper):
    """Writes repeated subtrees in full: Kubernetes manifests are read by tools that dislike YAML anchors."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("crds/onload.amd.com_onloads.yaml")
    target.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.dump(onload_crd(), Dumper=_NoAliasDumper, sort_keys=False, width=110)
    target.write_text(HEADER + body)


if __name__ == "__main__":
    main()
