/** `ecgfaas placement explain` and `ecgfaas monitors add`: the live scheduler's side of the CLI. */
import { Command } from 'commander';
import { MONITOR_ID_PATTERN } from '../../contracts/packet.js';
import { RedisClock } from '../../queue/clock.js';
import { RedisKeys } from '../../queue/keys.js';
import { explain, LivePlacer, loadPolicy, moveMonitors, readInventory, readSchedulerEvents, SchedulerLoop, storedDecision, type MoveOutcome } from '../../scheduler/index.js';
import { CliError, integerOption, printJson, redisUrlOf, withRedis } from '../common.js';
import { createLogger, untilSignal } from '../runtime.js';


/** The packet contract's monitor id. */
const MONITOR_ID = new RegExp(MONITOR_ID_PATTERN);

export function registerPlacement(program: Command): void {
  program
    .command('scheduler')
    .description('Run the scheduler\'s control loop until Ctrl-C (silent monitors released, interference detected and monitors moved away, idle VMs paused or shut down, paused VMs resumed for new monitors); or print its events')
    .option('--policy <file>', 'placement policy (YAML)')
    .option('--interval-s <s>', 'seconds between passes', integerOption('--interval-s', 1, 3600), 5)
    .option('--events', 'print the latest scheduler events (JSON lines) and exit')
    .option('--redis <url>', 'Redis URL (default: REDIS_URL)')
    .option('--prefix <prefix>', 'Redis key prefix', 'ecgfaas')
    .action(async (flags: { policy?: string; intervalS: number; events?: boolean; redis?: string; prefix: string }) => {
      const keys = new RedisKeys(flags.prefix);
      if (flags.events) {
        const events = await withRedis(redisUrlOf(flags.redis), (redis) => readSchedulerEvents(redis, keys));
        for (const event of events) printJson(event);
        return;
      }
      if (flags.policy === undefined) throw new CliError('CLI_NO_POLICY', 'give --policy FILE (or --events)', 2);
      const policy = await loadPolicy(flags.policy);
      const logger = createLogger('scheduler');
      await withRedis(redisUrlOf(flags.redis), async (redis) => {
        const clock = new RedisClock(redis, {});
        await clock.start();
        const loop = new SchedulerLoop({ redis, keys, policy, now: () => clock.now(), logger, intervalMs: flags.intervalS * 1000 });
        const stopped = untilSignal();
        loop.start();
        printJson({ event: 'ready', role: 'scheduler', pid: process.pid });
        try {
          await stopped;
        } finally {
          await loop.close();
          await clock.close();
        }
      });
    });

  const placement = program.command('placement').description('Where monitors are placed, and why');
  placement
    .command('explain <monitor>')
    .description('Say why a monitor is where it is, and which rules excluded the other workers')
    .option('--redis <url>', 'Redis URL (default: REDIS_URL)')
    .option('--prefix <prefix>', 'Redis key prefix', 'ecgfaas')
    .option('--json', 'print the stored decision as JSON')
    .action(async (monitor: string, flags: { redis?: string; prefix: string; json?: boolean }) => {
      if (!MONITOR_ID.test(monitor)) throw new CliError('CLI_BAD_MONITOR', `"${monitor}" is not a monitor id ([A-Za-z0-9_-]{1,64})`, 2);
      const keys = new RedisKeys(flags.prefix);
      await withRedis(redisUrlOf(flags.redis), async (redis) => {
        const [stored, slot] = await Promise.all([storedDecision(redis, keys, monitor), redis.hget(keys.assignments, monitor)]);
        if (stored === null) {
          throw new CliError('PLACEMENT_UNKNOWN', slot === null
            ? `monitor ${monitor} has never been placed`
            : `monitor ${monitor} is on slot ${slot}, placed without a policy (least-loaded live worker): no decision to explain`);
        }
        if (flags.json) {
          printJson({ monitor, slot, ...stored });
          return;
        }
        process.stdout.write(`${explain(stored.decision)}\n  decided ${new Date(stored.at).toISOString()}; assigned slot now: ${slot ?? 'none'}\n`);
      });
    });

  const monitorsCommand = program.command('monitors').description('Monitors known to the scheduler');
  monitorsCommand
    .command('move <monitor>')
    .description('Move a placed monitor to another worker (or the least-loaded live worker of a VM), without losing, repeating or reordering packets')
    .requiredOption('--to <worker-or-vm>', 'a worker id, or a VM name')
    .option('--reason <text>', 'recorded with the move event', 'moved by an operator')
    .option('--redis <url>', 'Redis URL (default: REDIS_URL)')
    .option('--prefix <prefix>', 'Redis key prefix', 'ecgfaas')
    .option('--json', 'print {monitor, from, to, moved, skipped?, moveId?, acknowledged}')
    .action(async (monitor: string, flags: { to: string; reason: string; redis?: string; prefix: string; json?: boolean }) => {
      if (!MONITOR_ID.test(monitor)) throw new CliError('CLI_BAD_MONITOR', `"${monitor}" is not a monitor id ([A-Za-z0-9_-]{1,64})`, 2);
      const keys = new RedisKeys(flags.prefix);
      const outcome = await withRedis(redisUrlOf(flags.redis), async (redis) => {
        const clock = new RedisClock(redis, { refreshMs: 0 });
        await clock.start();
        try {
          const inventory = await readInventory(redis, keys, { now: clock.now(), deadAfterMs: 15_000 });
          const live = inventory.workers.filter((worker) => worker.alive);
          const load = (id: string) => inventory.instances.filter((instance) => instance.worker === id).length;
          const target = live.find((worker) => worker.id === flags.to)
            ?? live.filter((worker) => worker.vm === flags.to).sort((a, b) => load(a.id) - load(b.id) || (a.id < b.id ? -1 : 1))[0];
          if (target === undefined) throw new CliError('MOVE_NO_TARGET', `no live worker is named ${flags.to}, and no VM of that name has one`);
          const from = inventory.instances.find((instance) => instance.monitor === monitor)?.worker;
          const fromVm = inventory.workers.find((worker) => worker.id === from)?.vm ?? null;
          const result = await moveMonitors({
            redis, keys, now: () => clock.now(), moves: [{ monitor, to: target.id, reason: flags.reason, fromVm, toVm: target.vm }],
          });
          return { ...(result.outcomes[0] as MoveOutcome), acknowledged: result.acknowledged };
        } finally {
          await clock.close();
        }
      });
      if (flags.json) printJson(outcome);
      else process.stdout.write(outcome.moved ? `${monitor}: ${outcome.from} → ${outcome.to} (handover ${outcome.moveId} begun)\n` : '');
      if (!outcome.moved) throw new CliError('MOVE_SKIPPED', `monitor ${monitor} was not moved: ${outcome.skipped}`);
    });
  monitorsCommand
    .command('add <monitors...>')
    .description('Place monitors ahead of their first packet, by a placement policy')
    .requiredOption('--policy <file>', 'placement policy (YAML)')
    .option('--redis <url>', 'Redis URL (default: REDIS_URL)')
    .option('--prefix <prefix>', 'Redis key prefix', 'ecgfaas')
    .option('--json', 'print {placed: [{monitor, slot}], refused: [{monitor, reason}]}')
    .action(async (monitors: string[], flags: { policy: string; redis?: string; prefix: string; json?: boolean }) => {
      const bad = monitors.find((monitor) => !MONITOR_ID.test(monitor));
      if (bad !== undefined) throw new CliError('CLI_BAD_MONITOR', `"${bad}" is not a monitor id ([A-Za-z0-9_-]{1,64})`, 2);
      const policy = await loadPolicy(flags.policy);
      const keys = new RedisKeys(flags.prefix);
      const outcome = await withRedis(redisUrlOf(flags.redis), async (redis) => {
        const clock = new RedisClock(redis, { refreshMs: 0 });
        await clock.start();
        try {
          const placer = new LivePlacer({ redis, keys, policy, now: () => clock.now() });
          const placed: Array<{ monitor: string; slot: string }> = [];
          const refused: Array<{ monitor: string; reason: string }> = [];
          for (const monitor of monitors) {
            try {
              placed.push({ monitor, slot: await placer.place(monitor) });
            } catch (error) {
              if ((error as { code?: string }).code !== 'PLACEMENT_REFUSED') throw error;
              refused.push({ monitor, reason: (error as Error).message });
            }
          }
          return { placed, refused };
        } finally {
          await clock.close();
        }
      });
      if (flags.json) printJson(outcome);
      else {
        for (const { monitor, slot } of outcome.placed) process.stdout.write(`${monitor} → ${slot}\n`);
        for (const { reason } of outcome.refused) process.stdout.write(`refused: ${reason}\n`);
      }
      if (outcome.refused.length > 0) throw new CliError('PLACEMENT_REFUSED', `${outcome.refused.length} of ${monitors.length} monitors were refused`);
    });
}
