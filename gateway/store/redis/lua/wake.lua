-- wake: tell the delivering processes that events were queued (gateway.store.redis.wakeups).
-- KEYS: none (a channel is not a key). ARGV: 1 the channel.
-- A script only so that the announcement rides in the store's batched calls.
return redis.call('PUBLISH', ARGV[1], '')
