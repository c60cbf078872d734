-- replay: new deliveries of an existing event, due now (dedupe is not consulted).
-- KEYS[1] event hash. ARGV: 1 prefix, 2 now, 3 uid, 4 nd, nd destinations, nd delivery ids.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local nd = tonumber(ARGV[4])
for j = 1, nd do
  add_delivery(ARGV[3], ARGV[4 + j], ARGV[4 + nd + j], ARGV[2], 'due')
end
refresh_status(ARGV[3])
return 1
