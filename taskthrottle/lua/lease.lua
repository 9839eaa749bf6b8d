-- lease.lua — renew or release one concurrency lease.
--
-- A lease is a member of the bucket's lease set, scored by its expiry. Release removes only the
-- caller's own member, so a release that comes after its lease expired (and the slot went to
-- another task) frees nothing else. Renewal extends only a lease that is still held.
--
-- KEYS[1]  the lease set (the bucket's key .. ':c')
-- ARGV[1]  "renew" or "release"   ARGV[2] lease id   ARGV[3] lease length, microseconds
-- ARGV[4]  the cap (renew only): a lapsed lease is taken again if the cap has room
-- Returns 1 if the lease was held (and is renewed or released), 2 if it had lapsed and was
-- taken again, 0 if it had lapsed and the cap is full (or, on release, it was gone).

local key, op, member = KEYS[1], ARGV[1], ARGV[2]
if op == 'release' then
  return redis.call('ZREM', key, member)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local expiry = tonumber(redis.call('ZSCORE', key, member))
local lease = tonumber(ARGV[3])
local held = 1
if not expiry or expiry <= now then
  -- Lapsed (the store was away, or the process could not renew in time): the running task
  -- takes its slot again if it can; if the cap is full, the caller must say the cap is broken.
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= tonumber(ARGV[4]) then return 0 end
  held = 2
end
redis.call('ZADD', key, now + lease, member)
if redis.call('PTTL', key) < lease / 1000 + 1 then
  redis.call('PEXPIRE', key, math.ceil(lease / 1000) + 1)
end
return held
