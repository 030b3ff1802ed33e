-- Add calls that were counted in Postgres while Redis was unreachable to the month counter,
-- unless the counter is gone: then the next call seeds it from Postgres, which has them.
-- KEYS: 1 month counter.  ARGV: 1 calls
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('INCRBY', KEYS[1], ARGV[1])
end
return 0
