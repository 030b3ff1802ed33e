-- Release calls that stayed open longer than any call can run: their worker died (killed on
-- timeout, out of memory) before answering. They were never billed; give back their place in
-- the month counter.
-- KEYS: 1 open calls zset, 2 month counter.  ARGV: 1 max age ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cutoff = now - tonumber(ARGV[1])
local stale = redis.call('ZCOUNT', KEYS[1], '-inf', cutoff)
if stale == 0 then
  return 0
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
local month = tonumber(redis.call('GET', KEYS[2]) or '0')
if month > 0 then
  redis.call('DECRBY', KEYS[2], math.min(month, stale))
end
return stale
