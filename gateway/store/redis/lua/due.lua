-- due, read only: what lease_due may take from one partition, oldest first.
-- KEYS: 1-9 shared. ARGV: 1 now, 2 how many of each kind.
-- Answers {expired leases, due deliveries}, each a flat list of delivery id, score, ...
-- Sent through the store's batched calls, this costs the worker far less than a pipeline of
-- the two reads through the client library.
local now, n = ARGV[1], tonumber(ARGV[2])
return {
  redis.call('ZRANGEBYSCORE', LEASED, '-inf', now, 'WITHSCORES', 'LIMIT', 0, n),
  redis.call('ZRANGEBYSCORE', DUE, '-inf', now, 'WITHSCORES', 'LIMIT', 0, n),
}
