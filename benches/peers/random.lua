-- wrk script: like cycle.lua, but each request takes a user drawn at random, as a server's users
-- arrive. cycle.lua's order lets the per-user data a server allocated in first-request order
-- stream in through the hardware prefetcher; this one does not.
-- usage: wrk ... -s random.lua http://127.0.0.1:PORT -- <header-file>
local reqs = {}
local n = 0

function init(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    local name, value = line:match("^([^:]+):%s*(.*)$")
    if name then
      n = n + 1
      reqs[n] = wrk.format("GET", "/me", { [name] = value })
    end
  end
  f:close()
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 1000)
end

function request()
  return reqs[math.random(n)]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_s=%.3f rps=%.1f p50_us=%d p90_us=%d p99_us=%d mean_us=%.1f max_us=%d err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
