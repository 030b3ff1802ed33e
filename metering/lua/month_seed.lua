-- (Re)build a customer's month counter: the Postgres month total the worker read, plus what
-- Redis holds that Postgres does not have yet (pending, an in-flight batch not applied at that
-- read, calls still open), then record the config version it was built for. Run when the
-- counter is missing or the meter script met a config newer than Redis's version (Redis
-- missed a change or an outage: calls may have been counted straight into Postgres).
-- The Postgres read is only valid if no flush took or released a batch since the worker
-- looked: the flush generation and the in-flight id it saw must still hold, or nothing is
-- written and the current ones are returned for another try.
-- KEYS: 1 month counter, 2 pending hash, 3 in-flight hash, 4 open calls zset (the month),
--       5 flush generation, 6 config version
-- ARGV: 1 Postgres month total, 2 generation seen, 3 in-flight id seen ('' none),
--       4 that batch was applied at the Postgres read (1/0), 5 usage field prefix of the month,
--       6 month ttl s, 7 config version, 8 version ttl s
-- Returns {1, month calls} once written, or {0, generation, in-flight id}.
local generation = redis.call('GET', KEYS[5]) or '0'
local inflight = redis.call('HGET', KEYS[3], '__id') or ''
if generation ~= ARGV[2] or inflight ~= ARGV[3] then
  return {0, generation, inflight}
end

local prefix = ARGV[5]
local function month_calls(hash)
  local total = 0
  local flat = redis.call('HGETALL', hash)
  for i = 1, #flat, 2 do
    if string.sub(flat[i], 1, #prefix) == prefix then
      total = total + tonumber(flat[i + 1])
    end
  end
  return total
end

-- An open call holds one unit; a quota lease (lease.lua) holds the `*<units>` its member ends with.
local opened = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  opened = opened + tonumber(string.match(m, '%*(%d+)$') or '1')
end
local month = tonumber(ARGV[1]) + month_calls(KEYS[2]) + opened
if inflight ~= '' and ARGV[4] == '0' then
  month = month + month_calls(KEYS[3])
end
month = math.max(month, 0)
redis.call('SET', KEYS[1], month, 'EX', ARGV[6])
local current = tonumber(redis.call('GET', KEYS[6]) or '-1')
if tonumber(ARGV[7]) > current then
  redis.call('SET', KEYS[6], ARGV[7], 'EX', ARGV[8])
end
return {1, month}
