"""Pure API models of the Onload custom resource and the CRD generated from them."""
