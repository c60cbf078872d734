-- redrive: dead deliveries due again at now, attempt count reset (attempts stay recorded).
-- KEYS[1] dead zset. ARGV: 1 prefix, 2 now, 3.. delivery ids.
local now, moved = ARGV[2], 0
for i = 3, #ARGV do
  local did = ARGV[i]
  local dk = P .. 'dl:' .. did
  local d = redis.call('HMGET', dk, 'state', 'dest', 'ev')
  if d[1] == 'dead' then
    redis.call('ZREM', KEYS[1], did)
    redis.call('ZADD', P .. 'due', now, did)
    redis.call('HSET', dk, 'state', 'due', 'next', now, 'made', 0)
    redis.call('HDEL', dk, 'first', 'dead_at', 'reason')
    depth(d[2], 'dead', -1)
    depth(d[2], 'due', 1)
    local ek = P .. 'ev:' .. d[3]
    redis.call('HINCRBY', ek, 'dead', -1)
    redis.call('HINCRBY', ek, 'pending', 1)
    refresh_status(d[3])
    moved = moved + 1
  end
end
return moved
