"""Inbound side: the request path of DESIGN 2, from route to durable enqueue or forward."""
