-- Take a customer's pending usage for flushing. A batch left in flight by a crashed
-- flush is returned again, with its original id, so Postgres can tell it was applied.
-- A new batch raises the customer's flush generation: cached Postgres totals read before it
-- are no longer trusted (see selectors.usage_summary).
-- KEYS: 1 pending hash, 2 in-flight hash, 3 flush generation.  ARGV: 1 new flush id, 2 ttl s
if redis.call('EXISTS', KEYS[2]) == 1 then
  return redis.call('HGETALL', KEYS[2])
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {}
end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[2], '__id', ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], ARGV[2])
return redis.call('HGETALL', KEYS[2])
