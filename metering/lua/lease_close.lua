-- Close a quota lease (lease.lua) or the part of it still running, once: bill the calls it
-- answered 2xx, give back the month units of the rest, drop its unused places from the window
-- and its entry from the customer's outstanding leases. Calls still running when it closes stay
-- open under a residual member `<open member>.<n>*<calls>` (same open time), closed the same way
-- once they are answered. A lease no longer open (released unbilled by the flush, open_expire.lua,
-- because its worker looked dead, or lost with Redis's data) bills nothing.
-- KEYS: 1 open calls zset, 2 month counter, 3 pending usage hash, 4 window zset, 5 leases zset
-- The used places move from the lease's end back to when their call was admitted (an upper bound
-- on Redis's clock: the grant's now plus the worker's time since it sent the grant, + 1 ms), so
-- each leaves the window a minute after its call, not a minute after the lease's end; never
-- later than before (LT), and never re-added once gone (XX).
-- ARGV: 1 pending ttl s, 2 open member, 3 outstanding member, 4 calls billed, 5 month units given
--       back, 6 window member prefix, 7 first unused place, 8 places (end, exclusive), 9 usage
--       field, 10 last-used field, 11 residual open member ('' for none), 12 the grant's Redis
--       now ms, then 13... each used place's admission, ms after it (place 0, 1, ...)
-- Returns the calls billed, or -1 if the lease was no longer open.
if ARGV[3] ~= '' then
  redis.call('ZREM', KEYS[5], ARGV[3])
end
local first, last = tonumber(ARGV[7]), tonumber(ARGV[8])
if last > first then
  local places = {}
  for i = first, last - 1 do
    places[#places + 1] = ARGV[6] .. ':' .. i
  end
  redis.call('ZREM', KEYS[4], unpack(places))
end
if #ARGV > 12 then
  local granted, moved = tonumber(ARGV[12]), {}
  for i = 13, #ARGV do
    moved[#moved + 1] = granted + tonumber(ARGV[i])
    moved[#moved + 1] = ARGV[6] .. ':' .. (i - 13)
  end
  redis.call('ZADD', KEYS[4], 'XX', 'LT', unpack(moved))
end
local opened = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not opened then
  return -1
end
redis.call('ZREM', KEYS[1], ARGV[2])
if ARGV[11] ~= '' then
  redis.call('ZADD', KEYS[1], opened, ARGV[11])
end
local billed = tonumber(ARGV[4])
if billed > 0 then
  local t = redis.call('TIME')
  redis.call('HINCRBY', KEYS[3], ARGV[9], billed)
  redis.call('HSET', KEYS[3], ARGV[10], t[1])
  redis.call('EXPIRE', KEYS[3], ARGV[1])
end
local back = tonumber(ARGV[5])
if back > 0 then
  local month = tonumber(redis.call('GET', KEYS[2]) or '0')
  if month > 0 then
    redis.call('DECRBY', KEYS[2], math.min(month, back))
  end
end
return billed
