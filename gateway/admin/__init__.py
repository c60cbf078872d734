"""Admin listener: health, readiness and metrics, separate from ingress (DESIGN 5.5)."""
