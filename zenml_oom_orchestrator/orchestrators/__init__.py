"""The OOM-aware Kubernetes orchestrator, its orchestrator-pod entrypoint and store sync."""
