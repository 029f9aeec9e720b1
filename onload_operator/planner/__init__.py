"""Pure decisions: from the observed cluster to the next writes (no Kubernetes client, no kopf).

``reconcile.plan`` is the pipeline: check the CR (``checks``), check selector conflicts (``conflicts``), choose the
Onload the children are rendered from (``deployed``), compare rendered children with the live ones (``compare``),
move node labels (``nodes``) and reduce the status (``status``). ``takeover`` holds every rule that exists only for
clusters taken over from the Go operator. The node-by-node upgrade plugs in as one more pure step of ``plan``: it
owns the nodes under upgrade (``nodes.upgrade_owned``) and returns its own ordered actions.
"""
