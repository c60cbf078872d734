"""The Redis plumbing the store and the rate limiter share, below both of them.

``connect`` makes the client a store URL names (one server, plain or TLS; a Redis Cluster; a
master that Redis Sentinel watches, found through ``sentinel``); ``pipeline`` batches the
script calls made in one turn of the event loop (``AutoPipeline``), over a ``link`` on a
single Redis; ``packing`` packs commands with hiredis. Nothing here knows what a key means:
the store and the limiter hand in their scripts, keys and arguments.
"""
