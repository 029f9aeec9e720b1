"""kubesim: a Kubernetes API server emulator with real semantics, for tests, benchmarks and a local sandbox."""
