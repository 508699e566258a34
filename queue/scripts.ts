/**
 * The few Lua scripts that must be atomic. They read the Redis server's own clock (TIME), which is
 * the one clock every process corrects to. Keys are passed as arguments in some scripts: the
 * platform targets one Redis (or a primary with replicas), not Redis Cluster.
 */
import type { Redis } from 'ioredis';

/** Sticky assignment: the monitor's slot if it has one, else the least-loaded live slot. */
const ASSIGN = `
local slot = redis.call('HGET', KEYS[1], ARGV[1])
if slot then return slot end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = redis.call('ZRANGEBYSCORE', KEYS[3], now - tonumber(ARGV[2]), '+inf')
if #live == 0 then return false end
local best, bestLoad = nil, nil
for _, s in ipairs(live) do
  local load = tonumber(redis.call('HGET', KEYS[2], s) or '0')
  if bestLoad == nil or load < bestLoad or (load == bestLoad and s < best) then best, bestLoad = s, load end
end
redis.call('HSET', KEYS[1], ARGV[1], best)
redis.call('HINCRBY', KEYS[2], best, 1)
return best
`;

/** Take or keep a slot's lease: KEYS lease, slots; ARGV owner, ttlMs, slot, mode (own|adopt). */
const LEASE = `
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if not holder and ARGV[4] == 'adopt' then
  local score = redis.call('ZSCORE', KEYS[2], ARGV[3])
  if not score then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
redis.call('ZADD', KEYS[2], now, ARGV[3])
return 1
`;

/** Give a slot's lease back if we hold it. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/**
 * A worker's commit of one queue job, all or nothing, fenced by the slot lease: if another worker
 * has taken the slot over (this one stalled past its lease), nothing is written and the caller drops
 * its in-memory state. ARGV: lease key, owner, then ops:
 *   R key value ttl      result (first writer wins)
 *   X stream value       latency record: written only if the R before it was (each packet's R comes first)
 *   C key value ttl log  checkpoint (replaces the replay log)
 *   L log value ttl      append a packet to the replay log
 *   P channel message    publish results
 *   O list value         append an episode write (with its latency record) to the slot's outbox; like X, only if the R before it was written
 *   K list value ttl     park a packet of a monitor whose handover to this slot is in progress (scheduler/moves.ts)
 *   T list count         drop the first count parked packets (processed in this commit)
 *   H key id             the handover with this id is done: delete the monitor's move record if it is still that one
 *   S hash field value   HSET (a monitor's last packet, for the release of silent monitors)
 */
const COMMIT = `
if redis.call('GET', ARGV[1]) ~= ARGV[2] then return 0 end
local i = 3
local n = #ARGV
-- FIX (duplicate latency records): a packet committed before (a retried or orphaned job's, too old
-- for the function to call it a duplicate, so 'late') has its result already; its record must not
-- be added a second time. The record goes with the result: both or neither.
local fresh = true
while i <= n do
  local op = ARGV[i]
  if op == 'R' then
    fresh = redis.call('SET', ARGV[i+1], ARGV[i+2], 'EX', tonumber(ARGV[i+3]), 'NX') ~= false; i = i + 4
  elseif op == 'X' then
    if fresh then redis.call('XADD', ARGV[i+1], '*', 'r', ARGV[i+2]) end; i = i + 3
  elseif op == 'C' then
    redis.call('SET', ARGV[i+1], ARGV[i+2], 'EX', tonumber(ARGV[i+3])); redis.call('DEL', ARGV[i+4]); i = i + 5
  elseif op == 'L' then
    redis.call('RPUSH', ARGV[i+1], ARGV[i+2]); redis.call('EXPIRE', ARGV[i+1], tonumber(ARGV[i+3])); i = i + 4
  elseif op == 'P' then
    redis.call('PUBLISH', ARGV[i+1], ARGV[i+2]); i = i + 3
  elseif op == 'O' then
    if fresh then redis.call('RPUSH', ARGV[i+1], ARGV[i+2]) end; i = i + 3
  elseif op == 'K' then
    redis.call('RPUSH', ARGV[i+1], ARGV[i+2]); redis.call('EXPIRE', ARGV[i+1], tonumber(ARGV[i+3])); i = i + 4
  elseif op == 'T' then
    redis.call('LTRIM', ARGV[i+1], tonumber(ARGV[i+2]), -1); i = i + 3
  elseif op == 'S' then
    redis.call('HSET', ARGV[i+1], ARGV[i+2], ARGV[i+3]); i = i + 4
  elseif op == 'H' then
    local move = redis.call('GET', ARGV[i+1])
    if move and cjson.decode(move).id == ARGV[i+2] then redis.call('DEL', ARGV[i+1]) end; i = i + 3
  else
    return redis.error_reply('unknown commit op ' .. tostring(op))
  end
end
return 1
`;

/**
 * The outbox's head has been stored in S3: drop those entries and add their latency records, in one
 * step, fenced by the slot lease (KEYS lease, outbox, latency stream; ARGV owner, count, records...).
 */
const OUTBOX_DONE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('LTRIM', KEYS[2], tonumber(ARGV[2]), -1)
for i = 3, #ARGV do redis.call('XADD', KEYS[3], '*', 'r', ARGV[i]) end
return 1
`;

/**
 * Duplicate check of a whole flush in one call (not one GETBIT per packet: each command costs the
 * gateway more CPU than Redis spends on it). ARGV: key, bit, key, bit, ... → one 0/1 per pair.
 */
const DEDUP_CHECK = `
local out = {}
for i = 1, #ARGV, 2 do out[#out + 1] = redis.call('GETBIT', ARGV[i], tonumber(ARGV[i+1])) end
return out
`;

/** Marks a flush's accepted packets (after their add resolved). ARGV: ttlSeconds, key, bit, ... */
const DEDUP_MARK = `
local ttl = tonumber(ARGV[1])
local touched = {}
for i = 2, #ARGV, 2 do
  redis.call('SETBIT', ARGV[i], tonumber(ARGV[i+1]), 1)
  if not touched[ARGV[i]] then touched[ARGV[i]] = true; redis.call('EXPIRE', ARGV[i], ttl) end
end
return 1
`;

/**
 * A supervisor saw a worker die (its deploy driver got the process's exit): every slot lease it
 * holds is dropped and the slots marked stale, so the next heartbeat of a live worker adopts them
 * instead of waiting for the leases to lapse. KEYS slots, workers; ARGV worker id, lease key prefix.
 */
const DECLARE_DEAD = `
local dropped = 0
for _, slot in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local lease = ARGV[2] .. slot
  if redis.call('GET', lease) == ARGV[1] then
    redis.call('DEL', lease)
    redis.call('ZADD', KEYS[1], 0, slot)
    dropped = dropped + 1
  end
end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return dropped
`;

export interface PlatformScripts {
  declareDead(slots: string, workers: string, workerId: string, leasePrefix: string): Promise<number>;
  dedupCheck(...keysAndBits: Array<string | number>): Promise<number[]>;
  dedupMark(ttlSeconds: number, ...keysAndBits: Array<string | number>): Promise<number>;
  assign(assignments: string, slotLoad: string, slots: string, monitorId: string, liveWindowMs: number): Promise<string | null>;
  lease(leaseKey: string, slots: string, owner: string, ttlMs: number, slot: string, mode: 'own' | 'adopt'): Promise<number>;
  release(leaseKey: string, owner: string): Promise<number>;
  commit(...args: Array<string | Buffer | number>): Promise<number>;
  outboxDone(leaseKey: string, outboxKey: string, streamKey: string, owner: string, count: number, ...records: string[]): Promise<number>;
}

/** Defines the scripts on a connection (ioredis runs them with EVALSHA, loading them once). */
export function withScripts(redis: Redis): Redis & PlatformScripts {
  const r = redis as Redis & PlatformScripts & { __ecgfaasScripts?: true };
  if (r.__ecgfaasScripts) return r;
  redis.defineCommand('assign', { numberOfKeys: 3, lua: ASSIGN });
  redis.defineCommand('lease', { numberOfKeys: 2, lua: LEASE });
  redis.defineCommand('release', { numberOfKeys: 1, lua: RELEASE });
  redis.defineCommand('commit', { numberOfKeys: 0, lua: COMMIT });
  redis.defineCommand('dedupCheck', { numberOfKeys: 0, lua: DEDUP_CHECK });
  redis.defineCommand('dedupMark', { numberOfKeys: 0, lua: DEDUP_MARK });
  redis.defineCommand('declareDead', { numberOfKeys: 2, lua: DECLARE_DEAD });
  redis.defineCommand('outboxDone', { numberOfKeys: 3, lua: OUTBOX_DONE });
  r.__ecgfaasScripts = true;
  return r;
}
