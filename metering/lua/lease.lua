-- One metered call that may also take a quota lease (README "The metered API", decisions
-- "Quota leases"): the checks of meter.lua, then, far from every limit, a block of g calls for
-- the worker to admit locally; near any limit (g < 2) exactly meter.lua's per-call reservation.
-- A lease takes g places in the window, scored at now + lease ms: every call the worker admits
-- under it (before the lease's local expiry, timed from before this script was sent) then stays
-- in the window at least a whole window after it was admitted. It takes g month units at once
-- (caps and spend cap are exact) and is ONE open call member `<open member>*g`, so the flush
-- (open_expire.lua) releases all its units, unbilled, if the worker dies. lease_close.lua ends it.
-- Grants are bounded so the under-admission stays small: the customer's leases outstanding in
-- Redis (the leases zset, member `<member>*g` scored at its expiry) never hold more than 1% of
-- the per-minute limit, and a lease takes at most 1% of the room left under a hard cap or
-- call ceiling, and never reaches an alert threshold (that call is metered alone).
-- KEYS: 1 window zset, 2 month counter, 3 open calls zset, 4 config version, 5 leases zset
-- ARGV: 1-10 as meter.lua, 11 calls wanted, 12 lease ms, 13 alert thresholds (comma separated),
-- 14 '1' for a lease asked ahead of its calls (a prefetch: no call of its own, so without a lease
-- nothing is taken and meter.lua's reply is returned as if for a call not made)
-- Returns meter.lua's reply, plus the calls granted and Redis's now (ms) when a lease was taken
-- ({0, limit, remaining, reset_ms, month_calls, g, now}; the month counter already includes all
-- g). lease_close.lua later moves each used place back to when its call was admitted.
-- include window.lua
-- include meter_checks.lua
local lease_ms = tonumber(ARGV[12])

local g = math.min(tonumber(ARGV[11]), limit - used)
if g >= 2 then
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
  local outstanding = 0
  for _, m in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
    outstanding = outstanding + tonumber(string.match(m, '%*(%d+)$') or '1')
  end
  g = math.min(g, math.floor(limit / 100) - outstanding)
end
if g >= 2 and ARGV[5] == '1' then
  g = math.min(g, math.floor((included - month) / 100))
end
if g >= 2 and ceiling >= 0 then
  g = math.min(g, math.floor((ceiling - month) / 100))
end
if g >= 2 then
  for t in string.gmatch(ARGV[13], '%d+') do
    t = tonumber(t)
    if t > month then
      g = math.min(g, t - month - 1)
    end
  end
end

-- The window key lives as long as its latest place: leases' places are scored ahead of now.
local function window_keep(key)
  if redis.call('PTTL', key) < window + lease_ms then
    redis.call('PEXPIRE', key, window + lease_ms)
  end
end

if g < 2 and ARGV[14] == '1' then
  return {0, limit, limit - used, reset, month}
end
if g < 2 then
  -- Near a limit: exactly meter.lua's one call.
  redis.call('ZADD', KEYS[1], now, ARGV[8])
  window_keep(KEYS[1])
  if used == 0 then
    reset = window
  end
  month = redis.call('INCR', KEYS[2])
  redis.call('ZADD', KEYS[3], now, ARGV[9])
  redis.call('EXPIRE', KEYS[3], ARGV[7])
  return {0, limit, limit - used - 1, reset, month}
end

local expires = now + lease_ms
local places = {}
for i = 0, g - 1 do
  places[#places + 1] = expires
  places[#places + 1] = ARGV[8] .. ':' .. i
end
redis.call('ZADD', KEYS[1], unpack(places))
window_keep(KEYS[1])
if used == 0 then
  reset = window + lease_ms
end
month = redis.call('INCRBY', KEYS[2], g)
redis.call('ZADD', KEYS[3], now, ARGV[9] .. '*' .. g)
redis.call('EXPIRE', KEYS[3], ARGV[7])
-- Outstanding until closed, or for two lease spans at most (a dead worker's lease stops
-- holding back other grants; its places leave the window a window after they were scored).
redis.call('ZADD', KEYS[5], expires + lease_ms, ARGV[8] .. '*' .. g)
redis.call('PEXPIRE', KEYS[5], 4 * lease_ms)
return {0, limit, limit - used - g, reset, month, g, now}
