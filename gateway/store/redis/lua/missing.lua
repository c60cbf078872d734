-- missing: flag a payment a reconciliation run could not recover (design.md 5.8), making one
-- in state pending when the gateway never saw it, or clear the flag.
-- KEYS: the payment's 13 keys in accept.lua's order (its hash, its events, payments,
--       payments:src:<source>, payments:conflict, lex:paykey, lex:payref, then the state
--       indexes in the order of STATE_KEYS), then the analytics hash of the source's day.
-- ARGV: 1 '1' to flag, '0' to clear, 2 now, 3 source, 4 key, 5 member, 6 reference or '',
--       7 the hour of the day of now (a payment made here is first seen now: rollup.lua).
local ph = KEYS[1]
if ARGV[1] == '0' then
  if redis.call('EXISTS', ph) == 1 then redis.call('HSET', ph, 'missing', 0) end
  return 0
end
if redis.call('EXISTS', ph) == 1 then
  redis.call('HSET', ph, 'missing', 1)
  return 1
end
local now, member = ARGV[2], ARGV[5]
redis.call('HSET', ph, 'source', ARGV[3], 'key', ARGV[4], 'state', 'pending', 'events', 0,
  'first', now, 'updated', now, 'conflict', 0, 'missing', 1)
local byupdate, bysource, lexkey, lexref = KEYS[3], KEYS[4], KEYS[6], KEYS[7]
redis.call('ZADD', byupdate, now, member)
redis.call('ZADD', bysource, now, member)
redis.call('ZADD', KEYS[8], now, member)
redis.call('ZADD', lexkey, 0, ARGV[4] .. '\n' .. member)
if ARGV[6] ~= '' then
  redis.call('HSET', ph, 'reference', ARGV[6])
  redis.call('ZADD', lexref, 0, ARGV[6] .. '\n' .. member)
end
rollup_payment(KEYS[14], ARGV[7], nil, 'pending', nil, nil, now, now)
return 2
