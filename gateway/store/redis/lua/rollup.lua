-- Analytics rollups (gateway.analytics.rollup, design.md 5.9), for accept.lua, missing.lua
-- and finish.lua: the same fields as in Python, added in the script of the change they count.
-- A rollup hash holds one source's day (an:<day>:<source>); a field is "<hour of the day>|"
-- then the field's name, or "|am|<scale>|<currency>" for a completed amount: a whole number
-- of minor units as text, of any size (bigadd), as a Lua number keeps only 53 bits.
-- ROLLUP_TTL, BIN_FLOOR, BIN_RATIO and BINS are set in front of this file.

-- The sum of two signed whole numbers written in decimal.
local function bigadd(a, b)
  local function parse(s)
    local negative = s:sub(1, 1) == '-'
    if negative then s = s:sub(2) end
    s = s:gsub('^0+', '')
    return negative and s ~= '', s
  end
  local function larger(x, y)  -- compares magnitudes: 1, 0 or -1
    if #x ~= #y then return #x > #y and 1 or -1 end
    if x == y then return 0 end
    return x > y and 1 or -1
  end
  local function digits(x, i) if i < 1 then return 0 end return x:byte(i) - 48 end
  local function combine(x, y, sign)  -- x + y, or x - y (x >= y) when sign is -1
    local out, carry, i, j = {}, 0, #x, #y
    while i > 0 or j > 0 do
      local d = digits(x, i) + sign * digits(y, j) + carry
      carry = 0
      if d < 0 then d, carry = d + 10, -1 elseif d > 9 then d, carry = d - 10, 1 end
      out[#out + 1] = d
      i, j = i - 1, j - 1
    end
    if carry > 0 then out[#out + 1] = carry end
    local text = {}
    for k = #out, 1, -1 do text[#text + 1] = out[k] end
    local r = table.concat(text):gsub('^0+', '')
    return r
  end
  local an, am = parse(a)
  local bn, bm = parse(b)
  local negative, r
  if an == bn then
    negative, r = an, combine(am, bm, 1)
  else
    local c = larger(am, bm)
    if c == 0 then return '0' end
    if c > 0 then negative, r = an, combine(am, bm, -1) else negative, r = bn, combine(bm, am, -1) end
  end
  if r == '' then return '0' end
  if negative then return '-' .. r end
  return r
end

local function negate(s)
  if s:sub(1, 1) == '-' then return s:sub(2) end
  return '-' .. s
end

-- The bin of a duration (seconds): the first whose bound is not below it.
local function rollup_bin(seconds)
  if seconds <= BIN_FLOOR then return 0 end
  return math.min(BINS - 1, math.ceil(math.log(seconds / BIN_FLOOR) / math.log(BIN_RATIO)))
end

local function rollup_count(an, hh, name, n)
  redis.call('HINCRBY', an, hh .. '|' .. name, n)
end

-- One payment change (before nil: the payment is new; amounts {value, scale, currency} or
-- nil), counted in the hour ``hh`` of the day hash ``an``.
local function rollup_payment(an, hh, before, after, was, is, first, now)
  if not before then
    rollup_count(an, hh, 'fs', 1)
    rollup_count(an, hh, 'st:' .. after, 1)
  elseif before ~= after then
    rollup_count(an, hh, 'st:' .. before, -1)
    rollup_count(an, hh, 'st:' .. after, 1)
  end
  if after == 'completed' and before ~= 'completed' then
    rollup_count(an, hh, 'tt:' .. rollup_bin(tonumber(now) - tonumber(first)), 1)
  end
  local deltas, order = {}, {}
  local function add(amount, value)
    local name = hh .. '|am|' .. amount.scale .. '|' .. amount.currency
    if not deltas[name] then deltas[name] = '0'; order[#order + 1] = name end
    deltas[name] = bigadd(deltas[name], value)
  end
  if before == 'completed' and was then add(was, negate(was.value)) end
  if after == 'completed' and is then add(is, is.value) end
  for _, name in ipairs(order) do
    if deltas[name] ~= '0' then
      redis.call('HSET', an, name, bigadd(redis.call('HGET', an, name) or '0', deltas[name]))
    end
  end
  redis.call('EXPIRE', an, ROLLUP_TTL)
end
