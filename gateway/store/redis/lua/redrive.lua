-- redrive: dead deliveries of one partition due again at now, attempt count reset (their
-- attempts stay recorded).
-- KEYS: 1-9 shared, then for each delivery its hash and its event's hash.
-- ARGV: 1 now, 2.. delivery ids.
local now, moved = ARGV[1], 0
for i = 2, #ARGV do
  local did = ARGV[i]
  local dk, ek = KEYS[10 + 2 * (i - 2)], KEYS[11 + 2 * (i - 2)]
  local d = redis.call('HMGET', dk, 'state', 'dest', 'ev')
  if d[1] == 'dead' then
    redis.call('ZREM', DEAD, did)
    redis.call('ZADD', DUE, now, did)
    redis.call('HSET', dk, 'state', 'due', 'next', now, 'made', 0)
    redis.call('HDEL', dk, 'first', 'dead_at', 'reason')
    depth(d[2], 'dead', -1)
    depth(d[2], 'due', 1)
    redis.call('HINCRBY', ek, 'dead', -1)
    redis.call('HINCRBY', ek, 'pending', 1)
    refresh_status(ek, d[3])
    moved = moved + 1
  end
end
return moved
