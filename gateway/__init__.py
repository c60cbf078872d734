"""webhook-gateway: an inbound webhook gateway that verifies, deduplicates and forwards."""

__version__ = "0.1.0"
