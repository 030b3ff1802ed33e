-- Drop an in-flight batch once Postgres committed it, unless it is another batch by now.
-- KEYS: 1 in-flight hash.  ARGV: 1 flush id
if redis.call('HGET', KEYS[1], '__id') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
