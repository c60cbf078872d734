"""Admin listener: health, readiness and metrics, separate from ingress (design.md 5.5)."""
