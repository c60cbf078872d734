-- lease_due. KEYS[1] due zset, KEYS[2] leased zset.
-- ARGV: 1 prefix, 2 now, 3 lease expiry, 4 limit, 5 token base, 6 worker.
-- Expired leases first (their worker died), then due deliveries, oldest first.
local now, expires, limit = ARGV[2], ARGV[3], tonumber(ARGV[4])
local out = {}
local function take(did, from_due)
  local dk = P .. 'dl:' .. did
  local token = ARGV[5] .. ':' .. (#out + 1)
  if from_due then
    redis.call('ZREM', KEYS[1], did)
    local dest = redis.call('HGET', dk, 'dest')
    depth(dest, 'due', -1)
    depth(dest, 'leased', 1)
  end
  redis.call('ZADD', KEYS[2], expires, did)
  redis.call('HSET', dk, 'state', 'leased', 'token', token, 'lexp', expires, 'worker', ARGV[6])
  local uid = redis.call('HGET', dk, 'ev')
  out[#out + 1] = {did, redis.call('HGETALL', dk), redis.call('HGETALL', P .. 'ev:' .. uid)}
end
for _, did in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)) do
  take(did, false)
end
if #out < limit then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit - #out)
  for _, did in ipairs(due) do take(did, true) end
end
return out
