-- A payment's state machine (gateway.payments.states, design.md 5.7), for accept.lua: the
-- same rule as ``advance`` in Python, decided in the accept's own atomic step.
local RANK = {pending = 0, processing = 1, completed = 2, failed = 2, expired = 2,
              cancelled = 2}

-- The payment's state after an event reporting ``reported`` (nil: none), and the event's mark.
local function advance(current, reported)
  if not reported or not current then return current or reported, nil end
  if RANK[current] == 2 and RANK[reported] == 2 and reported ~= current then
    return current, 'conflict'
  end
  if RANK[reported] < RANK[current] then return current, 'superseded' end
  return reported, nil
end

-- Record an event (uid, received at received_at) of the payment ``p`` describes, whose keys
-- start at KEYS[at] (accept.lua's header lists them), counting the change in the analytics
-- hash ``an`` at the hour ``hh`` of its day (rollup.lua); answers the event's mark or nil.
local function payment(p, at, uid, now, received_at, an, hh)
  local ph, member = KEYS[at], p.member
  local byupdate, bysource, conflicts = KEYS[at + 2], KEYS[at + 3], KEYS[at + 4]
  local lexkey, lexref = KEYS[at + 5], KEYS[at + 6]
  -- The index of each state, from KEYS (a state of no index fails the script: none exists).
  local state_keys = {}
  for i, name in ipairs(STATE_KEYS) do state_keys[name] = KEYS[at + 6 + i] end
  local reported = p.state
  if reported == cjson.null then reported = nil end
  local had = redis.call('HMGET', ph, 'state', 'updated', 'reference', 'conflict', 'first',
    'value', 'scale', 'currency', 'events')
  local current = had[1] or nil
  local state, mark = advance(current, reported)
  local updated = now
  -- What the payment's hash gets, written at once at the end (nothing reads it before then).
  local w = {}
  if not current then
    state = state or 'pending'
    w = {'source', p.source, 'key', p.key, 'state', state, 'events', 1, 'first', now,
      'updated', now, 'conflict', 0, 'missing', 0}
    redis.call('ZADD', lexkey, 0, p.key .. '\n' .. member)
  else
    if had[2] and tonumber(had[2]) > tonumber(now) then updated = had[2] end
    -- An event of it arrived: it is missing no more (design.md 5.8).
    w = {'events', (tonumber(had[9]) or 0) + 1, 'updated', updated, 'missing', 0}
    if mark == 'conflict' then
      w[#w + 1], w[#w + 2] = 'conflict', 1
    end
    if state ~= current then
      redis.call('ZREM', state_keys[current], member)
      w[#w + 1], w[#w + 2] = 'state', state
    end
  end
  if not mark then
    -- The payment's reference and amount follow its latest unmarked event that has them.
    local reference = p.reference
    if reference and reference ~= cjson.null and reference ~= had[3] then
      if had[3] then redis.call('ZREM', lexref, had[3] .. '\n' .. member) end
      redis.call('ZADD', lexref, 0, reference .. '\n' .. member)
      w[#w + 1], w[#w + 2] = 'reference', reference
    end
    local amount = p.amount
    if amount == cjson.null then amount = nil end
    if amount then
      local n = #w
      w[n + 1], w[n + 2], w[n + 3], w[n + 4] = 'value', amount.value, 'scale', amount.scale
      w[n + 5], w[n + 6] = 'currency', amount.currency
    end
    local was = nil
    if had[6] then was = {value = had[6], scale = had[7], currency = had[8]} end
    rollup_payment(an, hh, current, state, was, amount or was, had[5] or now, now)
  end
  redis.call('HSET', ph, unpack(w))
  redis.call('ZADD', byupdate, updated, member)
  redis.call('ZADD', bysource, updated, member)
  redis.call('ZADD', state_keys[state], updated, member)
  if mark == 'conflict' or had[4] == '1' then redis.call('ZADD', conflicts, updated, member) end
  redis.call('ZADD', KEYS[at + 1], received_at, uid)
  return mark
end
