-- lease.lua — renew or release one concurrency lease.
--
-- A lease is a member of the bucket's lease set, scored by its expiry. Release removes only the
-- caller's own member, so a release that comes after its lease expired (and the slot went to
-- another task) frees nothing else. Renewal extends only a lease that is still held.
--
-- KEYS[1]  the lease set (the bucket's key .. ':c')
-- ARGV[1]  "renew" or "release"   ARGV[2] lease id   ARGV[3] lease length, microseconds
-- Returns 1 if the lease was held (and is renewed or released), 0 if it had expired or was gone.

local key, op, member = KEYS[1], ARGV[1], ARGV[2]
if op == 'release' then
  return redis.call('ZREM', key, member)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local expiry = tonumber(redis.call('ZSCORE', key, member))
if not expiry or expiry <= now then
  redis.call('ZREM', key, member)
  return 0
end
local lease = tonumber(ARGV[3])
redis.call('ZADD', key, 'XX', now + lease, member)
if redis.call('PTTL', key) < lease / 1000 + 1 then
  redis.call('PEXPIRE', key, math.ceil(lease / 1000) + 1)
end
return 1
