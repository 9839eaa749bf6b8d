-- pause.lua — pause a throttle (every bucket) or one bucket until a time, or lift the pause.
--
-- A pause only ever grows (two workers told "stop for 30 s" and "stop for 10 s" keep 30 s);
-- acquire.lua treats it as one more limit: nothing starts before it ends.
--
-- KEYS[1]  the throttle's control hash (field `pause`), or a bucket (its state string)
-- ARGV[1]  "control" or "bucket"
-- ARGV[2]  microseconds from now (Redis clock) to pause for; < 0: lift the pause
-- Returns the paused-until time in microseconds on the Redis clock (0: not paused).

local key, kind = KEYS[1], ARGV[1]
local span = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

if kind == 'control' then
  if span < 0 then
    redis.call('HDEL', key, 'pause')
    return 0
  end
  local until_ = math.max(tonumber(redis.call('HGET', key, 'pause')) or 0, now + span)
  redis.call('HSET', key, 'pause', string.format('%d', until_))
  if redis.call('HEXISTS', key, 'spec') == 0 then  -- an override keeps the hash; else it expires
    redis.call('PEXPIRE', key, math.ceil((until_ - now) / 1000) + 1)
  end
  return until_
end

local stored = redis.call('GET', key) or '0 0'
local version, old, rest = string.match(stored, '^(%d+) (%d+)(.*)$')
local until_ = 0
if span >= 0 then until_ = math.max(tonumber(old), now + span) end
local ttl = redis.call('PTTL', key)
local keep = math.max(ttl, math.ceil((until_ - now) / 1000) + 1, 1)
redis.call('SET', key, string.format('%s %d%s', version, until_, rest), 'PX', keep)
return until_
