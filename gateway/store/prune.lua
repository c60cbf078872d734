-- prune (retention): delete finished events of one partition, read by the caller, with their
-- deliveries, attempts and index entries. An event is deleted only if it is still finished
-- (delivered or unrouted) and received before the cut: a replay since the read made it
-- queued again, and then it stays. Dedupe entries keep their own expiry.
-- KEYS: 1-9 shared, then for each event: its hash, its delivery list, its source index, its
--       id index, and for each of its deliveries the hash and the attempt list.
-- ARGV: 1 before (exclusive), then for each event: uid, number of deliveries.
local before, k, pruned = tonumber(ARGV[1]), 10, 0
local i = 2
while i <= #ARGV do
  local uid, nd = ARGV[i], tonumber(ARGV[i + 1])
  local ek, evdk, srck, idk = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local e = redis.call('HMGET', ek, 'status', 'received_at', 'n')
  if (e[1] == 'delivered' or e[1] == 'unrouted') and tonumber(e[2]) < before
      and tonumber(e[3]) == nd then
    for j = 1, nd do
      redis.call('DEL', KEYS[k + 2 + 2 * j], KEYS[k + 3 + 2 * j])
    end
    redis.call('DEL', ek, evdk)
    redis.call('ZREM', STATUS[e[1]], uid)
    redis.call('ZREM', EVENTS, uid)
    -- An emptied sorted set disappears with its last member: no index key is left behind.
    redis.call('ZREM', srck, uid)
    redis.call('ZREM', idk, uid)
    pruned = pruned + 1
  end
  k = k + 4 + 2 * nd
  i = i + 2
end
return pruned
