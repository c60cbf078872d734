-- lease_due, for candidates the caller read from the due and leased sets of one partition.
-- KEYS: 1-9 shared, then for each candidate its delivery hash and its event hash.
-- ARGV: 1 now, 2 lease expiry, 3 token base, 4 worker, 5 how many of each kind to read back
-- once the candidates are leased (0: none), 6.. candidate delivery ids.
-- Answers {taken, next}: taken holds {delivery id, its DFIELDS, its event's EFIELDS} for each
-- one taken (the field lists are put in front of this script by the store, which reads them
-- in that order); next, when asked for, what due.lua would answer now that these are taken
-- (the next call's candidates, saving it a read of its own), else an empty list.
-- A candidate is taken only if it is still due, or still leased under an expired lease (its
-- worker died): another worker may have taken it since it was read.
local now, expires = tonumber(ARGV[1]), ARGV[2]
local out = {}
-- Where the answer's delivery fields hold the destination and what this script writes.
local at = {}
for i, name in ipairs(DFIELDS) do at[name] = i end
for i = 6, #ARGV do
  local did = ARGV[i]
  local dk, ek = KEYS[10 + 2 * (i - 6)], KEYS[11 + 2 * (i - 6)]
  local lexp = redis.call('ZSCORE', LEASED, did)
  local due = redis.call('ZSCORE', DUE, did)
  local take = (lexp and tonumber(lexp) <= now) or (due and tonumber(due) <= now)
  if take then
    -- Read before the lease is written (it gives the destination), then answered as after.
    local fields = redis.call('HMGET', dk, unpack(DFIELDS))
    if due then
      redis.call('ZREM', DUE, did)
      depth(fields[at.dest], 'due', -1)
      depth(fields[at.dest], 'leased', 1)
    end
    local token = ARGV[3] .. ':' .. (#out + 1)
    redis.call('ZADD', LEASED, expires, did)
    redis.call('HSET', dk, 'state', 'leased', 'token', token, 'lexp', expires, 'worker', ARGV[4])
    fields[at.token], fields[at.lexp] = token, expires
    out[#out + 1] = {did, fields, redis.call('HMGET', ek, unpack(EFIELDS))}
  end
end
local ahead = tonumber(ARGV[5])
local next = {}
if ahead > 0 then
  next = {
    redis.call('ZRANGEBYSCORE', LEASED, '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ahead),
    redis.call('ZRANGEBYSCORE', DUE, '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ahead),
  }
end
return {out, next}
