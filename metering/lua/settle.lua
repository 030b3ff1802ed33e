-- Settle one call the verify API reserved ("settle": "later"), exactly once: bill it (the
-- service answered 2xx) or release it (anything else), as commit.lua and refund.lua do for the
-- calls Tollbooth answers itself. The call's ticket says where it is open and what to bill;
-- settling records the outcome in the ticket, so a second settle, even a concurrent one, finds
-- it and bills nothing. A call open longer than any call may run is expired: released here (or
-- already by the flush, open_expire.lua, with the same cutoff), never billed.
-- KEYS: 1 the call's ticket, 2 pending usage hash, 3 open calls zset and 4 month counter of this
--       month, 5 and 6 the same for the previous month (a call opened just before midnight on a
--       month's last day stays in that month)
-- ARGV: 1 the settling service's product, 2 '1' to bill or '0' to release, 3 max age of an open
--       call ms, 4 pending ttl s
-- The ticket (JSON): p product, o open calls zset, m open member, f usage field, t last-used
-- field; s the outcome once settled ('billed', 'released' or 'expired').
-- Returns 0 unknown call (or another product's), 1 billed, 2 released, 3 settled before,
-- 4 expired.
local raw = redis.call('GET', KEYS[1])
if not raw then
  return 0
end
local call = cjson.decode(raw)
if call.p ~= ARGV[1] then
  return 0
end
if call.s == 'expired' then
  return 4
end
if call.s then
  return 3
end

local function settled(outcome, code)
  call.s = outcome
  redis.call('SET', KEYS[1], cjson.encode(call), 'KEEPTTL')
  return code
end

local open, month
if call.o == KEYS[3] then
  open, month = KEYS[3], KEYS[4]
elseif call.o == KEYS[5] then
  open, month = KEYS[5], KEYS[6]
else
  return settled('expired', 4)
end
local score = redis.call('ZSCORE', open, call.m)
if not score then
  -- Released by the flush: no answer came in time.
  return settled('expired', 4)
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local expired = tonumber(score) <= now - tonumber(ARGV[3])
if expired or ARGV[2] ~= '1' then
  redis.call('ZREM', open, call.m)
  if tonumber(redis.call('GET', month) or '0') > 0 then
    redis.call('DECR', month)
  end
  if expired then
    return settled('expired', 4)
  end
  return settled('released', 2)
end
redis.call('ZREM', open, call.m)
redis.call('HINCRBY', KEYS[2], call.f, 1)
redis.call('HSET', KEYS[2], call.t, clock[1])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return settled('billed', 1)
