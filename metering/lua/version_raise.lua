-- Publish a customer's new config version; never move it backwards when commits race.
-- KEYS: 1 version key.  ARGV: 1 version, 2 ttl s
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
