"""Built-in providers, one signature scheme per module (installed as ``gateway.plugins``)."""
