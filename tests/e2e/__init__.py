"""End-to-end tests: the gateway runs as separate OS processes, the way an operator runs it."""
