-- prune (retention): delete finished events of one partition, read by the caller, with their
-- deliveries, attempts and index entries. An event is deleted only if it is still finished
-- (delivered or unrouted) and received before the cut: a replay since the read made it
-- queued again, and then it stays. Dedupe entries keep their own expiry.
-- KEYS: 1-9 shared, 10 lex:id, 11 lex:subj, 12 subjects, then for each event: its hash, its
--       delivery list, its source index, its id index, its subj: hash, its type's index if
--       it has a type, its subject's event index if it has a subject, and for each of its
--       deliveries the hash and the attempt list.
-- ARGV: 1 before (exclusive), then for each event: uid, number of deliveries, whether it has
--       a type and a subject (1/0 each, so the key list is read as it was made even if the
--       event is gone meanwhile), its subjects member ("s:<subject>" or "e:<uid>").
local before, k, pruned = tonumber(ARGV[1]), 13, 0
local lexid, lexsubj, subjects = KEYS[10], KEYS[11], KEYS[12]
local i = 2
while i <= #ARGV do
  local uid, nd, skey = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 4]
  local typed, subjected = ARGV[i + 2] == '1', ARGV[i + 3] == '1'
  local ek, evdk, srck, idk, hk = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  -- Read only when the event has a type (a subject): else the key is the next one's.
  local typek = KEYS[k + 5]
  if typed then k = k + 1 end
  local subjevk = KEYS[k + 5]
  if subjected then k = k + 1 end
  k = k + 5
  local e = redis.call('HMGET', ek, 'status', 'received_at', 'n', 'id', 'subject')
  if (e[1] == 'delivered' or e[1] == 'unrouted') and tonumber(e[2]) < before
      and tonumber(e[3]) == nd then
    for j = 0, nd - 1 do
      redis.call('DEL', KEYS[k + 2 * j], KEYS[k + 1 + 2 * j])
    end
    redis.call('DEL', ek, evdk)
    redis.call('ZREM', STATUS[e[1]], uid)
    redis.call('ZREM', EVENTS, uid)
    -- An emptied sorted set disappears with its last member: no index key is left behind.
    redis.call('ZREM', srck, uid)
    redis.call('ZREM', idk, uid)
    redis.call('ZREM', lexid, e[4] .. '\n' .. uid)
    if typed then redis.call('ZREM', typek, uid) end
    if subjected and e[5] then
      redis.call('ZREM', subjevk, uid)
      redis.call('ZREM', lexsubj, e[5] .. '\n' .. uid)
    end
    if redis.call('HINCRBY', hk, 'n', -1) <= 0 then
      redis.call('DEL', hk)
      redis.call('ZREM', subjects, skey)
    end
    pruned = pruned + 1
  end
  k = k + 2 * nd
  i = i + 5
end
return pruned
