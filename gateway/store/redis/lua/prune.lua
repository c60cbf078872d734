-- prune (retention): delete finished events of one partition, read by the caller, with their
-- deliveries, attempts and index entries. An event is deleted only if it is still finished
-- (delivered, unrouted or held) and received before the cut: a replay since the read made it
-- queued again, and then it stays. Dedupe entries keep their own expiry. A payment goes with
-- its last event.
-- KEYS: 1-9 shared, 10 lex:id, 11 lex:subj, 12 the held events' index, then for each event:
--       its hash, its delivery list, its source index, its id index, its type's index if it
--       has a type, its payment's 13 keys if it is about one (accept.lua's order), and for
--       each of its deliveries the hash and the attempt list.
-- ARGV: 1 before (exclusive), then for each event: uid, number of deliveries, whether it has
--       a type and a payment (1/0 each, so the key list is read as it was made even if the
--       event is gone meanwhile), its payment's member ("<source>\n<key>", or '').
STATUS.held = KEYS[12]
local before, k, pruned = tonumber(ARGV[1]), 13, 0
local lexid, lexsubj = KEYS[10], KEYS[11]
local FINISHED = {delivered = true, unrouted = true, held = true}
local i = 2
while i <= #ARGV do
  local uid, nd, member = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 4]
  local typed, paid = ARGV[i + 2] == '1', ARGV[i + 3] == '1'
  local ek, evdk, srck, idk = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  k = k + 4
  -- Read only when the event has a type (a payment): else the key is the next one's.
  local typek = KEYS[k]
  if typed then k = k + 1 end
  local pay = k
  if paid then k = k + 13 end
  local e = redis.call('HMGET', ek, 'status', 'received_at', 'n', 'id', 'subject')
  if e[1] and FINISHED[e[1]] and tonumber(e[2]) < before and tonumber(e[3]) == nd then
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
    if e[5] then redis.call('ZREM', lexsubj, e[5] .. '\n' .. uid) end
    if paid then
      local ph = KEYS[pay]
      redis.call('ZREM', KEYS[pay + 1], uid)
      if redis.call('HINCRBY', ph, 'events', -1) <= 0 then
        local p = redis.call('HMGET', ph, 'state', 'key', 'reference')
        for s = 7, 12 do redis.call('ZREM', KEYS[pay + s], member) end
        redis.call('ZREM', KEYS[pay + 2], member)
        redis.call('ZREM', KEYS[pay + 3], member)
        redis.call('ZREM', KEYS[pay + 4], member)
        if p[2] then redis.call('ZREM', KEYS[pay + 5], p[2] .. '\n' .. member) end
        if p[3] then redis.call('ZREM', KEYS[pay + 6], p[3] .. '\n' .. member) end
        redis.call('DEL', ph)
      end
    end
    pruned = pruned + 1
  end
  k = k + 2 * nd
  i = i + 5
end
return pruned
