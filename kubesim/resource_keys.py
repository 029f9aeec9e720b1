"""The keys under which kubesim stores the resources its own code names (``<group>/<version>/<plural>``, the core
group written ``v1/<plural>``), shared by the store, the server and the simulated controllers."""

NAMESPACES = "v1/namespaces"
NODES = "v1/nodes"
PODS = "v1/pods"
EVENTS = "v1/events"
SERVICES = "v1/services"
DAEMONSETS = "apps/v1/daemonsets"
BUDGETS = "policy/v1/poddisruptionbudgets"
CRDS = "apiextensions.k8s.io/v1/customresourcedefinitions"
MODULES = "kmm.sigs.x-k8s.io/v1beta1/modules"
