"""Inbound side: the request path of design.md 2, from route to durable enqueue or forward."""
