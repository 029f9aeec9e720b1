"""Pure decisions: from the observed cluster to the next writes (no Kubernetes client, no kopf).

``reconcile.plan`` is the pipeline: validate the CR, check selector conflicts, choose the Onload the children are
rendered from (``deployed.effective_onload``), compare rendered children with the live ones (``compare``), move
node labels (``nodes.plan_node_labels``) and reduce the status. The node-by-node upgrade fits in as one more
planner: it takes over exactly what this pipeline leaves alone -- nodes whose labels carry another version and CRs
whose ``version``/``userImage``/``kernelMappings`` differ from the recorded deployment (``UpgradePending``) -- and
adds its steps (taint, evict, relabel one node, move the recorded deployment) as further actions of the plan, which
the adapter carries out like the others.
"""
