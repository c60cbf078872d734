"""The benchmark behind ``make bench``: the gateway measured against bare baselines in one run.

Every number is reported as a ratio to a baseline measured in the same run, on the same
machine, under the same load, because absolute numbers move with whatever else the machine is
doing. See docs/benchmark.md for what each measure means and how to read it.

Modules:

* ``payloads``  -- ~400-byte payments events and their Standard Webhooks signatures
* ``servers``   -- the bare ingress baseline and the fake destination (own processes)
* ``loadgen``   -- the load generator (own process): pre-signed keep-alive HTTP/1.1 load, and
  the direct aiohttp delivery baseline
* ``procs``     -- starting, probing and stopping the processes by PID; peak RSS from /proc
* ``scenarios`` -- ingress, delivery and verification measurements with their baselines
* ``nginx``     -- Debian's nginx as the fast destination and as the proxy_pass baseline
* ``wrk``       -- pre-signed request pools for wrk (read by ``pool.lua``) and wrk runs
* ``pinned``    -- the wrk measurements, each server pinned to a core of its own
* ``report``    -- the tables on stdout and the JSON in bench/results/latest.json
"""
