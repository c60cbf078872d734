"""Outbound side: what the destination receives, retries, and the delivery workers."""
