-- The checks every metered call passes before it takes anything, shared by meter.lua and
-- lease.lua (put in place of their `-- include meter_checks.lua` line when metering.connection
-- loads them): config freshness, the entitlement, the month counter, then the refusals of the
-- hard cap, the spend cap and the rate. Both scripts take KEYS 1-4 and ARGV 1-10 alike.
-- Leaves `month`, `window`, `limit`, `now`, `used`, `reset`, `included` and `ceiling` set.
local ver = redis.call('GET', KEYS[4])
if ver and tonumber(ver) > tonumber(ARGV[1]) then
  return {-1, ver}
end
local current = ver and tonumber(ver) == tonumber(ARGV[1])
-- The entitlement is judged after the version check, so a product just granted is callable on
-- the next call. A refusal takes no place in the window or the month.
-- With no version in Redis yet the config is the newest known (a grant raises the version), so
-- a refusal needs no reload or seed either.
if ARGV[10] == '0' and (current or not ver) then
  return {4}
end
local month = redis.call('GET', KEYS[2])
-- A config newer than Redis's version: Redis missed a change or an outage (calls counted in
-- Postgres meanwhile raised the version), so its month counter is not to be trusted.
if not current then
  month = false
end
if not month then
  return {-2}
end
month = tonumber(month)

local window = tonumber(ARGV[3])
local limit = tonumber(ARGV[2])
local now, used, reset = window_read(KEYS[1], window)
local included = tonumber(ARGV[4])
if ARGV[5] == '1' and month >= included then
  return {2, limit, math.max(limit - used, 0), reset, month}
end
local ceiling = tonumber(ARGV[6])
if ceiling >= 0 and month >= ceiling then
  return {3, limit, math.max(limit - used, 0), reset, month}
end
if used >= limit then
  return {1, limit, 0, reset, month}
end
