-- Release calls that stayed open longer than any call can run: their worker died (killed on
-- timeout, out of memory) before answering. They were never billed; give back their place in
-- the month counter. A quota lease (lease.lua) is one member holding `*<units>` month units.
-- KEYS: 1 open calls zset, 2 month counter.  ARGV: 1 max age ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cutoff = now - tonumber(ARGV[1])
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
if #members == 0 then
  return 0
end
local stale = 0
for _, m in ipairs(members) do
  stale = stale + tonumber(string.match(m, '%*(%d+)$') or '1')
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
local month = tonumber(redis.call('GET', KEYS[2]) or '0')
if month > 0 then
  redis.call('DECRBY', KEYS[2], math.min(month, stale))
end
return stale
