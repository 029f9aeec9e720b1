"""Pure decisions: from the observed cluster to the next writes (no Kubernetes client, no kopf).

``reconcile.plan`` is the pipeline: check the CR (``checks``), check selector conflicts (``conflicts``), choose the
revisions the children are rendered from (``revisions``), compare rendered children with the live ones
(``compare``), let the node-by-node upgrade (``onload_operator.upgrade``) move the nodes that run another revision,
move the labels of every other node (``nodes``) and reduce the status (``status``). ``takeover`` holds every rule
that exists only for clusters taken over from the Go operator.
"""
