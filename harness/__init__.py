"""Real programs that the test suite and the benchmark start for themselves, each on free
local ports in a temporary directory of its own: redis-server alone, as a Redis Cluster, and
with Sentinel. Neither tests/ nor bench/ is imported from here."""
