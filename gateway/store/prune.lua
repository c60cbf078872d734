-- prune (retention): delete at most limit finished events (status delivered or unrouted, so no
-- delivery is due, leased or dead) received before a time, with their deliveries, attempts and
-- index entries. Dedupe entries (dd:, sid:) keep their own expiry and are not touched.
-- Bounded by limit so the script stays short; the caller loops.
-- KEYS[1] events zset. ARGV: 1 prefix, 2 before (exclusive), 3 limit.
local before, limit = '(' .. ARGV[2], tonumber(ARGV[3])
local pruned = 0
for _, st in ipairs({'delivered', 'unrouted'}) do
  if pruned >= limit then break end
  local sk = P .. 'events:st:' .. st
  for _, uid in ipairs(redis.call('ZRANGEBYSCORE', sk, '-inf', before, 'LIMIT', 0, limit - pruned)) do
    local ek, evd = P .. 'ev:' .. uid, P .. 'evd:' .. uid
    local e = redis.call('HMGET', ek, 'source', 'id')
    for _, did in ipairs(redis.call('LRANGE', evd, 0, -1)) do
      redis.call('DEL', P .. 'dl:' .. did, P .. 'at:' .. did)
    end
    redis.call('DEL', ek, evd)
    redis.call('ZREM', sk, uid)
    redis.call('ZREM', KEYS[1], uid)
    -- An emptied sorted set disappears with its last member: no index key is left behind.
    if e[1] then redis.call('ZREM', P .. 'events:src:' .. e[1], uid) end
    if e[2] then redis.call('ZREM', P .. 'id:' .. e[2], uid) end
    pruned = pruned + 1
  end
end
return pruned
