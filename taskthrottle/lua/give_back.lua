-- give_back.lua — undo what one acquire.lua decision took, as far as that is safe.
--
-- The decision's window entries (found by name) and the caller's lease are always removed
-- (removing never lets more through). The token buckets are rolled back only if the decision took a fresh slot and
-- nothing was written to the bucket since (its version is unchanged): otherwise later callers
-- already hold slots computed after this one, and rolling back would double-book them; the
-- token then lapses, which errs on the safe side.
--
-- KEYS[1]  the bucket (as acquire.lua)   KEYS[2]  the throttle's control hash
-- ARGV[1]  spec   ARGV[2] cost   ARGV[3] outcome (1 granted, 2 reserved)
-- ARGV[4]  slot (unused: the ticket names the decision; kept so callers' arguments stay put)
-- ARGV[5]  ticket from the decision      ARGV[6] lease id or ""
-- Returns 1 if the buckets were rolled back, else 0.

local bkey, ckey = KEYS[1], KEYS[2]
local cost = tonumber(ARGV[2])
local granted = ARGV[3] == '1'
local ticket = tonumber(ARGV[5])
local spec = redis.call('HGET', ckey, 'spec') or ARGV[1]

local version = math.floor(ticket / 2)
for kind, a in string.gmatch(spec, '(%a)(%d+):%d+') do
  if kind == 'w' and version > 0 then  -- the decision's entries, by name
    local key = bkey .. ':w' .. a
    for i = 1, cost do redis.call('ZREM', key, string.format('%d.%d', version, i)) end
  end
end
if ARGV[6] ~= '' then redis.call('ZREM', bkey .. ':c', ARGV[6]) end

local stored = redis.call('GET', bkey)
if ticket % 2 ~= 1 or not stored then return 0 end
local stored_version = string.match(stored, '^(%d+) ')
if tonumber(stored_version) ~= version then return 0 end

local it = string.gmatch(stored, '%S+')
it()  -- the version
local parts = {string.format('%d %s', version + 1, it())}  -- and the bucket's pause
local incs = {}
for kind, a, b in string.gmatch(spec, '(%a)(%d+):(%d+)') do
  if kind == 'b' then incs[a .. ':' .. b] = cost * tonumber(a) end
end
for id in it do
  local tat, sat = tonumber(it()), tonumber(it())
  local inc = incs[id] or 0
  tat = tat - inc
  if granted then sat = sat - inc end
  parts[#parts + 1] = string.format('%s %d %d', id, tat, sat)
end
local ttl = redis.call('PTTL', bkey)
redis.call('SET', bkey, table.concat(parts, ' '), 'PX', ttl > 0 and ttl or 1)
return 1
