"""The buyer's live payment status (design.md 5.10): ``GET /status/{source}/{key}`` on the
ingress listener, a WebSocket or Server-Sent Events.

``token`` checks the capability a marketplace mints for one payment (pure), ``message``
says what a page is told of its payment (pure), ``hub`` follows the store's change log for
the payments this process's streams watch and holds the caps, and ``routes`` is the HTTP
side: the checks before any upgrade, CORS, and the two transports.
"""
