-- acquire.lua — one admission decision for one bucket of a throttle, across all its limits,
-- atomically: every limit agrees on one start time or nothing is taken from any of them.
--
-- Limits (the spec, ARGV[1], or the operator's override stored in KEYS[2]):
--   b<interval>:<burst>  token bucket, as GCRA kept twice:
--        tat  the schedule: the theoretical arrival time after every grant *and reservation*
--             (a denied caller reserves the next free slot here, so a backlog is deferred once);
--        sat  the start gate: the same GCRA over admissions that actually start. A reserved task
--             may arrive late (a busy pool, a stalled worker) and would otherwise start bunched
--             with the tasks after it. A late claim the gate would hold back longer than `inline`
--             is bumped to a fresh slot: the one late task pays, not every task after it.
--   w<period>:<count>    exact sliding window: a sorted set of start times (score, microseconds),
--        grants and reservations alike. A start at t is allowed when fewer than count-cost+1
--        entries are later than t-period: then no window of length `period` that holds t holds
--        more than `count` (future reservations are counted too, so this is safe, if cautious).
--        Entries older than one period are trimmed on every decision; the key expires one
--        period after its newest entry.
--   ARGV[7] "<cap>:<lease>"  concurrency cap (not overridable): a sorted set of leases, score =
--        expiry (microseconds). A grant adds the caller's lease; a full set answers BUSY and
--        takes nothing from the rate limits.
-- A pause (KEYS[2] field `pause`: the whole throttle; the bucket's own, in its state) is one more
-- limit: nothing starts before it ends.
--
-- KEYS[1]  the bucket: the string "<version> <pause> {<id> <tat> <sat>}" (id = "<interval>:<burst>");
--          its windows are KEYS[1]..':w'..<period> and its leases KEYS[1]..':c' (same hash tag)
-- KEYS[2]  the throttle's control hash: `spec` (an override of the limits), `pause`
-- ARGV[1]  spec     the limits of the code, e.g. "b100000:1 w10000000:20"
-- ARGV[2]  cost     tokens (window entries) this decision takes
-- ARGV[3]  slot     microseconds: the reservation the caller holds; 0 for a fresh request
-- ARGV[4]  horizon  microseconds: a slot further ahead than this is not reserved; < 0: never
-- ARGV[5]  inline   microseconds: a start at most this far ahead is GRANTED (caller sleeps)
-- ARGV[6]  lease    the caller's lease id (concurrency only)
-- ARGV[7]  cap      "<cap>:<lease microseconds>" or ""
-- ARGV[8]  held     the ticket of the reservation being claimed (names its window entries)
-- ARGV[9]  not_before  microseconds: start no earlier (another throttle of the same task
--          starts then); 0: no such bound
-- ARGV[10] "1": the slot claimed is the caller's own GRANT, being moved to a later start; if
--          nothing was written since, its own mark on the start gate is taken off first
--
-- Returns "<code> <wait> <slot> <now> <ticket> <paused-until>" (integers, microseconds):
--   1 GRANTED   recorded on every limit; begin after `wait`, at `slot` (0 <= wait <= inline)
--   2 RESERVED  `slot` is held on every limit; come back after `wait` with it
--   3 DENIED    nothing is held (a claimed slot is given up); the next slot is beyond horizon
--   4 BUSY      the concurrency cap is full; nothing taken (a claimed slot is kept);
--               `wait` = until the oldest lease expires (an upper bound)
--   5 NEVER     `cost` exceeds what a limit can ever grant (an override made it so)
-- `ticket` = version * 2 + fresh, 0 if nothing was written: give_back.lua undoes the schedule
-- and gate of a fresh decision only if nothing was written after it (version unchanged).
-- Clock: redis.call('TIME') only; never the caller's.

local bkey, ckey = KEYS[1], KEYS[2]
local cost = tonumber(ARGV[2])
local slot = tonumber(ARGV[3])
local horizon = tonumber(ARGV[4])
local inline = tonumber(ARGV[5])
local member = ARGV[6]
local not_before = tonumber(ARGV[9]) or 0
local max, min = math.max, math.min

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

-- The limits: "<kind><a>:<b>" tokens; nil unless every token is sound (an operator's override
-- that is not falls back to the code's limits: never to no limit at all).
local function limits(spec)
  if not spec then return nil end
  local found = {}
  for token in string.gmatch(spec, '%S+') do
    local kind, a, b = string.match(token, '^([bw])(%d+):(%d+)$')
    local x, y = tonumber(a), tonumber(b)
    if not kind or x < 1 or x > 281474976710656 or y < 1 or y > 1000000000 then return nil end
    found[#found + 1] = {kind, a, b, x, y}
  end
  if #found == 0 then return nil end
  return found
end

local control = redis.call('HMGET', ckey, 'spec', 'pause')
local spec = limits(control[1]) or limits(ARGV[1]) or {}
local pause = tonumber(control[2]) or 0

-- A bucket never seen (or expired) starts its versions at the clock: a version never repeats,
-- so a late give_back can never match another caller's decision.
local version, own_pause, state = now, 0, {}
local stored = redis.call('GET', bkey)
if stored then
  local it = string.gmatch(stored, '%S+')
  version, own_pause = tonumber(it()), tonumber(it())
  for id in it do
    state[id] = {tonumber(it()), tonumber(it())}
  end
end
pause = max(pause, own_pause)

local buckets, windows = {}, {}
for _, limit in ipairs(spec) do
  local kind, a, b, x, y = limit[1], limit[2], limit[3], limit[4], limit[5]
  if cost > y then
    return string.format('5 0 0 %d %d 0', now, version)
  end
  if kind == 'b' then
    local id = a .. ':' .. b
    local s = state[id] or {now, now}
    buckets[#buckets + 1] = {id = id, tat = s[1], sat = s[2], inc = cost * x,
                             tol = (y - cost) * x}
  elseif kind == 'w' then
    local key = bkey .. ':w' .. a
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - x)
    windows[#windows + 1] = {key = key, period = x, count = y}
  end
end

local lkey, cap, lease = bkey .. ':c', nil, nil
local busy, busy_wait = false, 0
if ARGV[7] ~= '' then
  local c, l = string.match(ARGV[7], '^(%d+):(%d+)$')
  cap, lease = tonumber(c), tonumber(l)
  redis.call('ZREMRANGEBYSCORE', lkey, '-inf', now)
  if not redis.call('ZSCORE', lkey, member) and redis.call('ZCARD', lkey) >= cap then
    busy = true
    local oldest = redis.call('ZRANGE', lkey, 0, 0, 'WITHSCORES')
    busy_wait = tonumber(oldest[2]) - now
  end
end

-- A decision's window entries are named "<its version>.<1..cost>": a claim finds the entries
-- of its reservation by name (another decision's entries may share their score).
local held_version = math.floor((tonumber(ARGV[8]) or 0) / 2)
local function entries(w)
  local mine = {}
  if held_version == 0 then return mine end
  for i = 1, cost do
    local name = string.format('%d.%d', held_version, i)
    if redis.call('ZSCORE', w.key, name) then mine[#mine + 1] = name end
  end
  return mine
end
local function drop(w)
  local mine = entries(w)
  if #mine > 0 then redis.call('ZREM', w.key, unpack(mine)) end
end

local code, wait, at
local writes = false  -- does the state string change?
local fresh = 0  -- 1: this decision took a new slot on the schedule (give_back may undo it)
local move_from = nil  -- a claim's slot: its window entries move to the window's `add_at`

if slot ~= 0 and horizon >= 0 and slot - now > horizon then
  slot = 0  -- no reservation lies that far ahead: a forged or corrupted header, ask afresh
end
if slot ~= 0 and ARGV[10] == '1' and held_version == version then
  for _, b in ipairs(buckets) do b.sat = b.sat - b.inc end  -- the gate as before that grant
end
if slot ~= 0 then
  if slot - now > inline then
    -- Early by the Redis clock (skewed worker clocks): keep the reservation, nothing changes.
    code, wait, at = 2, slot - now, slot
  else
    local start = max(now, slot, pause, not_before)
    for _, b in ipairs(buckets) do start = max(start, b.sat - b.tol) end
    local fits = start - now <= inline
    if fits then
      -- A window whose entries for this slot are not all there (a late start, or a window
      -- added, changed or lost since the reservation) takes them at the start, if it can.
      for _, w in ipairs(windows) do
        local mine = #entries(w)
        local later = redis.call('ZCOUNT', w.key, string.format('(%d', start - w.period), '+inf')
        if slot > start - w.period then later = later - mine end
        if (start > slot or mine < cost) and later > w.count - cost then fits = false break end
        w.add_at = start  -- renamed after this decision (give_back finds them by name)
      end
    end
    if fits and busy then
      code, wait, at = 4, busy_wait, slot
    elseif fits then
      code, wait, at, writes, move_from = 1, start - now, start, true, slot
      for _, b in ipairs(buckets) do b.sat = max(b.sat, start) + b.inc end
    else
      -- Bumped: starting this late claim would hold back the starts after it.
      for _, w in ipairs(windows) do drop(w) w.add_at = nil end
    end
  end
end

if code == nil then
  if busy then
    code, wait, at = 4, busy_wait, 0
  else
    -- A fresh slot: the earliest time every limit allows.
    at = max(now, pause, not_before)
    for _, b in ipairs(buckets) do at = max(at, b.tat - b.tol, b.sat - b.tol) end
    for _, w in ipairs(windows) do
      local j = redis.call('ZCARD', w.key) - w.count + cost  -- this entry must leave the window
      if j >= 1 then
        local e = redis.call('ZRANGE', w.key, j - 1, j - 1, 'WITHSCORES')
        at = max(at, tonumber(e[2]) + w.period)
      end
    end
    wait = at - now
    fresh = 1
    for _, w in ipairs(windows) do w.add_at = at end
    if wait <= inline then
      code, writes = 1, true
      for _, b in ipairs(buckets) do
        b.tat, b.sat = max(b.tat, at) + b.inc, max(b.sat, at) + b.inc
      end
    elseif horizon < 0 or wait > horizon then
      code, at = 3, 0
    else
      code, writes = 2, true
      for _, b in ipairs(buckets) do b.tat = max(b.tat, at) + b.inc end
    end
  end
end

if writes then
  version = version + 1
  local expires = max(now, own_pause)
  for _, w in ipairs(windows) do
    if w.add_at then
      if move_from then drop(w) end
      for i = 1, cost do
        redis.call('ZADD', w.key, w.add_at, string.format('%d.%d', version, i))
      end
    end
    local newest = redis.call('ZRANGE', w.key, -1, -1, 'WITHSCORES')
    if #newest > 0 then
      local ends = tonumber(newest[2]) + w.period
      redis.call('PEXPIRE', w.key, math.ceil((ends - now) / 1000) + 1)
      expires = max(expires, ends)  -- the state outlives its entries: versions stay unique
    end
  end
  local parts = {string.format('%d %d', version, own_pause)}
  for _, b in ipairs(buckets) do
    parts[#parts + 1] = string.format('%s %d %d', b.id, b.tat, b.sat)
    expires = max(expires, b.tat, b.sat)
  end
  redis.call('SET', bkey, table.concat(parts, ' '),
             'PX', math.ceil((expires - now) / 1000) + 1)
  if code == 1 and cap then
    redis.call('ZADD', lkey, now + lease, member)
    redis.call('PEXPIRE', lkey, math.ceil(lease / 1000) + 1)
  end
end
return string.format('%d %d %d %d %d %d', code, wait, at, now, writes and version * 2 + fresh or 0,
                     pause > now and pause or 0)
