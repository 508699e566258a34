/** `ecgfaas worker` and `ecgfaas gateway`: the two long-running processes of the platform. */
import { Command, Option } from 'commander';
import { Gateway } from '../../gateway/index.js';
import { createS3Client, EmbeddedS3, s3SettingsFromEnv } from '../../storage/index.js';
import { loadPolicy } from '../../scheduler/index.js';
import { WarmWorker } from '../../worker/index.js';
import { integerOption, redisUrlOf, resolveModelPath } from '../common.js';
import { createLogger, untilSignal } from '../runtime.js';


/** Prints one JSON line on stdout when ready: the local deploy driver waits for it. */
function announce(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description('Run a warm worker: loads the model once, consumes its queue slot, keeps per-monitor function state (S3 from ECGFAAS_S3_* / AWS_* env)')
    .option('--redis <url>', 'Redis URL (default: REDIS_URL)')
    .option('--model <name|path>', 'ONNX model: default, paper, or a path', 'default')
    .option('--extra-compute-ms <ms>', 'burn this much CPU per packet (the paper\'s classifier took ~305 ms)', integerOption('--extra-compute-ms', 0), 0)
    .option('--extra-compute-iterations <n>', 'do this exact CPU work per packet instead (a loop count calibrated once elsewhere: ecgfaas experiment does so on the host, so every worker does the same work)', integerOption('--extra-compute-iterations', 0), 0)
    .option('--no-episodes', 'do not store abnormal episodes (the function still finds them): runs without storage writes')
    .addOption(new Option('--driver <driver>', 'the deploy driver that started this worker (recorded in every latency record)').choices(['local', 'libvirt']).default('local'))
    .option('--host <name>', 'physical host, when the deployer knows it')
    .option('--vm <name>', 'the VM this worker runs in, as the deployer named it (default: the hostname)')
    .option('--worker-id <id>', 'worker id (default: hostname-pid-random)')
    .option('--checkpoint-every <n>', 'packets between full checkpoints of a monitor', integerOption('--checkpoint-every', 1), 30)
    .option('--result-ttl <s>', 'seconds results stay readable at GET /v1/invocations/:id', integerOption('--result-ttl', 1), 300)
    .option('--prefix <prefix>', 'Redis key prefix', 'ecgfaas')
    .action(async (options: {
      redis?: string; model: string; extraComputeMs: number; extraComputeIterations: number; episodes: boolean; driver: 'local' | 'libvirt'; host?: string; vm?: string; workerId?: string; checkpointEvery: number;
      resultTtl: number; prefix: string;
    }) => {
      const logger = createLogger('worker');
      const settings = s3SettingsFromEnv();
      const client = createS3Client(settings);
      // A deploy driver that cannot signal the process (it runs in a guest) asks it to stop through Redis.
      const stopRequested = new AbortController();
      const worker = new WarmWorker({
        onStopRequested: () => stopRequested.abort(),
        redisUrl: redisUrlOf(options.redis),
        keyPrefix: options.prefix,
        modelPath: resolveModelPath(options.model),
        storage: { kind: 'thread', s3: settings },
        s3: { client, bucket: settings.bucket },
        logger,
        driver: options.driver,
        host: options.host ?? null,
        vm: options.vm ?? null,
        extraComputeMs: options.extraComputeMs,
        extraComputeIterations: options.extraComputeIterations,
        storeEpisodes: options.episodes,
        checkpointEvery: options.checkpointEvery,
        resultTtlSeconds: options.resultTtl,
        ...(options.workerId !== undefined ? { workerId: options.workerId } : {}),
      });
      const stopped = untilSignal(stopRequested.signal);
      try {
        await worker.start();
        announce({ event: 'ready', role: 'worker', workerId: worker.id, hypervisor: worker.facts?.hypervisor.kind ?? null, pid: process.pid });
        const signal = await stopped;
        logger.info({ signal }, 'stopping worker');
      } finally {
        await worker.close();
        client.destroy();
      }
    });

  program
    .command('gateway')
    .description('Run a gateway: the HTTP API devices post packets to')
    .option('--redis <url>', 'Redis URL (default: REDIS_URL)')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port (0: a free one)', integerOption('--port', 0, 65535), 8080)
    .option('--wait-timeout-ms <ms>', 'longest a ?wait=1 request waits for its result', integerOption('--wait-timeout-ms', 0), 1000)
    .option('--prefix <prefix>', 'Redis key prefix', 'ecgfaas')
    .option('--policy <file>', 'place new monitors by this placement policy (YAML, docs/SCHEDULER.md); default: the least-loaded live worker')
    .option('--monitor-rate <n>', 'packets per second one monitor may send (a token bucket; bursts of 6 s worth, at least 30)', integerOption('--monitor-rate', 1, 100_000), 5)
    .option('--flush-window-ms <ms>', 'wait this long after a packet for others to share its enqueue (fewer Redis round trips per packet under load)', integerOption('--flush-window-ms', 0, 1000), 15)
    .action(async (options: { redis?: string; host: string; port: number; waitTimeoutMs: number; prefix: string; flushWindowMs: number; monitorRate: number; policy?: string }) => {
      const logger = createLogger('gateway');
      const policy = options.policy === undefined ? undefined : await loadPolicy(options.policy);
      const gateway = new Gateway({
        redisUrl: redisUrlOf(options.redis), keyPrefix: options.prefix, host: options.host, port: options.port,
        waitTimeoutMs: options.waitTimeoutMs, flushWindowMs: options.flushWindowMs, logger,
        monitorRate: { perSecond: options.monitorRate, burst: Math.max(30, 6 * options.monitorRate) }, ...(policy !== undefined ? { policy } : {}),
      });
      const stopped = untilSignal();
      try {
        const url = await gateway.start();
        announce({ event: 'ready', role: 'gateway', gatewayId: gateway.id, url, pid: process.pid });
        const signal = await stopped;
        logger.info({ signal }, 'stopping gateway');
      } finally {
        await gateway.close();
      }
    });
}

/** `ecgfaas s3`: the embedded S3-compatible store as a process of its own (the stack runs it so it does not share a thread with anything). */
export function registerS3Server(program: Command): void {
  program
    .command('s3')
    .description('Serve the embedded S3-compatible store (s3rver) from a directory on a loopback port')
    .requiredOption('--dir <dir>', 'where the objects live')
    .option('--port <port>', 'port (0: a free one)', integerOption('--port', 0, 65535), 0)
    .option('--bucket <name>', 'bucket to create', 'ecgfaas')
    .action(async (options: { dir: string; port: number; bucket: string }) => {
      const store = new EmbeddedS3({ directory: options.dir, port: options.port, bucket: options.bucket });
      const stopped = untilSignal();
      try {
        const settings = await store.start();
        announce({ event: 'ready', role: 's3', endpoint: settings.endpoint, bucket: settings.bucket, pid: process.pid });
        await stopped;
      } finally {
        await store.close();
      }
    });
}
