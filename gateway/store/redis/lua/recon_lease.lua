-- recon_lease: one reconciliation run of a source at a time, across every process and
-- replica (design.md 5.8).
-- KEYS: 1 the source's lease. ARGV: 1 'take' or 'give', 2 the holder, 3 the lease (ms).
-- Answers 1 when taken (or renewed by its holder) or given up, 0 when another holds it.
local held = redis.call('GET', KEYS[1])
if ARGV[1] == 'take' then
  if held and held ~= ARGV[2] then return 0 end
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
if held == ARGV[2] then redis.call('DEL', KEYS[1]) return 1 end
return 0
