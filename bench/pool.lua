-- wrk script of the pinned measurements: send pre-built requests one after another.
--
-- The requests are complete raw HTTP/1.1 requests, built and signed by bench/wrk.py just
-- before the phase (so their Standard Webhooks timestamps are fresh for the whole phase),
-- in a file of "<length>\n<bytes>" records named by WRK_POOL. Each request carries its own
-- webhook-id, so (with one wrk thread, -t1, as the bench runs it: each thread starts at
-- the top of the pool) as long as the pool does not wrap, every request is a new event for the
-- gateway. done() prints one JSON line (prefixed WRK_JSON) with wrk's counts, its latency
-- percentiles and how many requests were handed out, so a wrapped pool shows.
--
-- No response() callback: defining one makes wrk hand every answer to Lua, which would slow
-- the load generator down; the gateway's own metrics say how each request ended.

-- Globals, not locals: done() runs in another Lua state and reads them with thread:get().
pool_size = 0
handed = 0

local pool = {}
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   local file = assert(io.open(assert(os.getenv("WRK_POOL"), "WRK_POOL not set"), "rb"))
   while true do
      local line = file:read("*l")
      if not line then break end
      pool_size = pool_size + 1
      pool[pool_size] = file:read(tonumber(line))
   end
   file:close()
   assert(pool_size > 0, "empty request pool")
end

function request()
   handed = handed + 1
   return pool[(handed - 1) % pool_size + 1]
end

function done(summary, latency, requests)
   local handed_out, size = 0, 0
   for _, thread in ipairs(threads) do
      handed_out = handed_out + thread:get("handed")
      size = thread:get("pool_size")
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, '
         .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
         .. '"latency_us": {"mean": %.1f, "stdev": %.1f, "max": %d, '
         .. '"p50": %d, "p90": %d, "p99": %d, "p999": %d}, '
         .. '"handed_out": %d, "pool": %d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.stdev, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9),
      handed_out, size))
end
