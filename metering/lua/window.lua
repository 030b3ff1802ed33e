-- The per-minute sliding-window log, shared by meter.lua and meter_test.lua: metering.connection
-- puts this file in place of their `-- include window.lua` line when it loads them, so both
-- scripts keep one copy of the window and neither sends Redis more commands than before.

-- Redis's clock, not the workers': one clock for every host makes the window exact.
-- Drops the calls older than the window; returns now (ms), the calls left in the window, and
-- the ms until the oldest of them leaves it (0 when the window is empty).
local function window_read(key, window)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local used = redis.call('ZCARD', key)
  local reset = 0
  if used > 0 then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    reset = tonumber(oldest[2]) + window - now
  end
  return now, used, reset
end

-- An accepted call takes its place in the window; returns the reset for the answer (a first
-- call opens a whole window).
local function window_take(key, window, now, member, used, reset)
  redis.call('ZADD', key, now, member)
  -- Never shorten the key's life: a quota lease's places (lease.lua) are scored ahead of now.
  if redis.call('PTTL', key) < window then
    redis.call('PEXPIRE', key, window)
  end
  if used == 0 then
    return window
  end
  return reset
end
