-- Bill calls that were answered 2xx: each open call moves into the pending usage hash.
-- A call no longer open (released by the flush because no answer came in time, or lost
-- with Redis's data) is not billed.
-- KEYS: 1 open calls zset, 2 pending usage hash
-- ARGV: 1 pending ttl s, then triples: open member, usage field, last-used field
local t = redis.call('TIME')
local billed = 0
for i = 2, #ARGV, 3 do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('HINCRBY', KEYS[2], ARGV[i + 1], 1)
    redis.call('HSET', KEYS[2], ARGV[i + 2], t[1])
    billed = billed + 1
  end
end
if billed > 0 then
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
return billed
