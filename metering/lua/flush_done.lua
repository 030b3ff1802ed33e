-- Drop an in-flight batch once Postgres committed it, unless it is another batch by now,
-- and raise the customer's flush generation (Postgres totals changed).
-- KEYS: 1 in-flight hash, 2 flush generation.  ARGV: 1 flush id
if redis.call('HGET', KEYS[1], '__id') == ARGV[1] then
  redis.call('INCR', KEYS[2])
  return redis.call('DEL', KEYS[1])
end
return 0
