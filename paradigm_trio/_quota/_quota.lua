-- paradigm-trio: a requests-per-minute and a tokens-per-minute quota shared in Redis.
--
-- Two continuous token buckets, each holding at most a minute's worth and refilled at
-- rate/60 a second, kept in one hash and updated atomically on Redis's clock (TIME).
-- A bucket Redis does not hold yet starts empty.  An amount larger than a whole bucket
-- waits for a full bucket and then goes, leaving the bucket in debt.
--
-- KEYS[1]  the quota (hash): r, t (levels), ts (last refill), lr, lt (limits learnt from
--          the server), pause (Redis time until which nothing is sent), nr, nt (requests
--          and tokens taken, ever)
-- KEYS[2]  the live workers (sorted set: worker id -> Redis time its heartbeat expires)
-- KEYS[3]  this worker's heartbeat key (expires with the worker)
-- ARGV[1]  the operation: take, update, beat, leave, state
-- ARGV[2]  the time to use instead of TIME ('' in production; tests pass virtual time)
-- ARGV[3]  requests per minute, ARGV[4] tokens per minute, of this worker (0: none)
-- ARGV[5...] the operation's arguments (below)

if redis.replicate_commands then redis.replicate_commands() end  -- Redis < 5: TIME, then writes

local op = ARGV[1]
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function fmt(x)
  return string.format('%.17g', x)
end

local function num(value, default)
  if value == false or value == nil or value == '' then
    return default
  end
  return tonumber(value)
end

-- The rate in force: the worker's and the server's, the lower of those given.
local function rate(user, learnt)
  if user > 0 and learnt > 0 then
    return math.min(user, learnt)
  end
  return math.max(user, learnt)
end

local IDLE_TTL = 3600000  -- ms: a quota nobody touched for an hour is forgotten

local q = KEYS[1]
local f = redis.call('HMGET', q, 'r', 't', 'ts', 'lr', 'lt', 'pause', 'nr', 'nt')
local level_r, level_t = num(f[1], 0), num(f[2], 0)
local ts = num(f[3], now)
local learnt_r, learnt_t = num(f[4], 0), num(f[5], 0)
local pause = num(f[6], 0)
local nr, nt = num(f[7], 0), num(f[8], 0)
local rpm = rate(tonumber(ARGV[3]), learnt_r)
local tpm = rate(tonumber(ARGV[4]), learnt_t)

-- Refill since the last update (never backwards).
if now > ts then
  local elapsed = now - ts
  if rpm > 0 then level_r = math.min(rpm, level_r + elapsed * rpm / 60) end
  if tpm > 0 then level_t = math.min(tpm, level_t + elapsed * tpm / 60) end
  ts = now
end

local function save()
  redis.call('HSET', q, 'r', fmt(level_r), 't', fmt(level_t), 'ts', fmt(ts),
    'lr', fmt(learnt_r), 'lt', fmt(learnt_t), 'pause', fmt(pause),
    'nr', fmt(nr), 'nt', fmt(nt))
  redis.call('PEXPIRE', q, IDLE_TTL)
end

-- Seconds until `need` can be taken from a bucket at `level` (a full bucket at most).
-- A wait under a microsecond is float dust (a time near 1.8e9 s is exact to 0.24 us):
-- none, so that a worker told to wait it is never told the same again.
local function delay(level, need, per_minute)
  if per_minute <= 0 then return 0 end
  need = math.min(need, per_minute)
  local wait = (need - level) * 60 / per_minute
  if wait < 1e-6 then return 0 end
  return wait
end

local workers = KEYS[2]

if op == 'take' then
  -- ARGV[5] tokens.  Returns {wait, now, nr, nt, rpm, tpm, live workers}: wait 0 when
  -- taken (nr, nt then count this request), else the seconds to wait before asking again.
  local tokens = tonumber(ARGV[5])
  local wait = math.max(0, pause - now, delay(level_r, 1, rpm), delay(level_t, tokens, tpm))
  if wait <= 0 then
    if rpm > 0 then level_r = level_r - 1 end
    if tpm > 0 then level_t = level_t - tokens end
    nr = nr + 1
    nt = nt + tokens
  end
  save()
  local live = redis.call('ZCOUNT', workers, '(' .. fmt(now), '+inf')
  return {fmt(wait), fmt(now), fmt(nr), fmt(nt), fmt(rpm), fmt(tpm), live}
end

-- Lower a bucket to the server's `remaining`, brought forward from the request that it
-- answered (taken when `taken_then` had been taken, at `then_`) to now.
local function follow(level, per_minute, remaining, taken_then, then_, taken_now)
  if remaining == nil or taken_then == nil or taken_now < taken_then then
    return level
  end
  local estimate = remaining - (taken_now - taken_then) + per_minute / 60 * math.max(0, now - then_)
  if estimate < level - 1 then return estimate end
  return level
end

if op == 'update' then
  -- ARGV[5] tokens to give back (> 0) or charge (< 0); ARGV[6] '1' to empty the buckets
  -- (the server says the quota is spent); ARGV[7] seconds to pause every worker;
  -- ARGV[8..11] and ARGV[12..15]: what the server said of requests, then of tokens:
  -- limit, remaining, taken when the request was sent, and when ('' when unknown).
  local limit_r, limit_t = num(ARGV[8], 0), num(ARGV[12], 0)
  if limit_r > 0 then
    if rpm <= 0 then level_r = num(ARGV[9], 0) end  -- a new bucket: what the server says
    learnt_r = limit_r
    rpm = rate(tonumber(ARGV[3]), learnt_r)
    level_r = math.min(level_r, rpm)
    level_r = follow(level_r, rpm, num(ARGV[9]), num(ARGV[10]), num(ARGV[11]), nr)
  end
  if limit_t > 0 then
    if tpm <= 0 then level_t = num(ARGV[13], 0) end
    learnt_t = limit_t
    tpm = rate(tonumber(ARGV[4]), learnt_t)
    level_t = math.min(level_t, tpm)
    level_t = follow(level_t, tpm, num(ARGV[13]), num(ARGV[14]), num(ARGV[15]), nt)
  end
  local adjust = tonumber(ARGV[5])
  if tpm > 0 and adjust ~= 0 then level_t = math.min(tpm, level_t + adjust) end
  if ARGV[6] == '1' then
    level_r = math.min(level_r, 0)
    level_t = math.min(level_t, 0)
  end
  local seconds = tonumber(ARGV[7])
  if seconds > 0 then pause = math.max(pause, now + seconds) end
  save()
  return {fmt(level_r), fmt(level_t), fmt(math.max(0, pause - now)), fmt(rpm), fmt(tpm)}
end

if op == 'beat' then
  -- ARGV[5] worker id, ARGV[6] seconds it stays live, ARGV[7] what it says of itself.
  -- Returns the number of live workers.
  local ttl = tonumber(ARGV[6])
  redis.call('SET', KEYS[3], ARGV[7], 'PX', math.ceil(ttl * 1000))
  redis.call('ZADD', workers, fmt(now + ttl), ARGV[5])
  redis.call('ZREMRANGEBYSCORE', workers, '-inf', '(' .. fmt(now))
  redis.call('PEXPIRE', workers, math.ceil(ttl * 1000))
  return redis.call('ZCARD', workers)
end

if op == 'leave' then
  -- ARGV[5] worker id.  Returns the number of live workers left.
  redis.call('DEL', KEYS[3])
  redis.call('ZREM', workers, ARGV[5])
  return redis.call('ZCARD', workers)
end

if op == 'state' then
  -- ARGV[5] the prefix of heartbeat keys.  Returns {exists, now, rpm, tpm, r, t, pause
  -- left, nr, nt, then an id and what it said of itself for each live worker}.  Writes
  -- nothing.
  local reply = {f[3] ~= false and '1' or '0', fmt(now), fmt(rpm), fmt(tpm), fmt(level_r),
    fmt(level_t), fmt(math.max(0, pause - now)), fmt(nr), fmt(nt)}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', workers, '(' .. fmt(now), '+inf')) do
    table.insert(reply, id)
    table.insert(reply, redis.call('GET', ARGV[5] .. id) or '')
  end
  return reply
end

return redis.error_reply('paradigm-trio quota: unknown operation ' .. tostring(op))
