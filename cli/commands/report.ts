import { existsSync } from 'node:fs';
import path from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import Table from 'cli-table3';
import type { Command } from 'commander';
import { Redis } from 'ioredis';
import { buildReport, formatReport } from '../../report/index.js';
import {
  createS3Client, EmbeddedS3, isValidRunId, listRuns, readRoundTrips, readRunEvents, readRunManifest, readRunRecords, s3SettingsFromEnv,
} from '../../storage/index.js';
import { CliError, parseInteger, printJson } from '../common.js';

interface ReportFlags {
  run?: string;
  list?: boolean;
  json?: boolean;
  deadlineMs: string;
  store: string;
  redis?: string;
  prefix: string;
}

const EMBEDDED_BUCKET = 'ecgfaas';

export function registerReportCommand(program: Command): void {
  program
    .command('report')
    .description('Latency report of a run (Mean, Min, Max, SD, % failure, percentiles per hypervisor and collocation), or --list the stored runs.')
    .option('--run <id>', 'the run to report on')
    .option('--list', 'list stored runs')
    .option('--json', 'print one JSON object on stdout')
    .option('--deadline-ms <ms>', 'an answer later than this is a failure', '1000')
    .option('--store <dir>', 'local store of the embedded S3 (used when ECGFAAS_S3_ENDPOINT is not set)', '.ecgfaas')
    .option('--redis <url>', 'also include records not yet persisted (default: $REDIS_URL)')
    .option('--prefix <prefix>', 'Redis key prefix', 'ecgfaas')
    .action(async (flags: ReportFlags) => {
      if ((flags.run === undefined) === (flags.list !== true)) throw new CliError('CLI_USAGE', 'give either --run ID or --list', 2);
      if (flags.list === true) {
        const runs = await withRunStore(flags.store, (store) => (store === null ? Promise.resolve([]) : listRuns(store)));
        if (flags.json) printJson(runs);
        else process.stdout.write(formatRuns(runs));
        return;
      }
      const runId = flags.run as string;
      if (!isValidRunId(runId)) throw new CliError('CLI_BAD_RUN', `"${runId}" is not a run id`, 2);
      const deadlineMs = parseInteger(flags.deadlineMs, '--deadline-ms');
      if (deadlineMs <= 0) throw new CliError('CLI_BAD_NUMBER', '--deadline-ms must be positive', 2);
      const redisUrl = flags.redis ?? (process.env.REDIS_URL || undefined);

      const loaded = await withRunStore(flags.store, async (store) => {
        if (store === null) return null;
        const [manifest, clientRoundTrips, events, records] = await Promise.all([
          readRunManifest({ ...store, runId }),
          readRoundTrips({ ...store, runId }),
          readRunEvents({ ...store, runId }),
          withRedis(redisUrl, (redis) => readRunRecords({ ...store, runId, prefix: flags.prefix, ...(redis === null ? {} : { redis }) })),
        ]);
        return { manifest, clientRoundTrips, events, records };
      });
      if (loaded === null || (loaded.manifest === null && loaded.clientRoundTrips === null && loaded.records.length === 0)) {
        throw new CliError('CLI_RUN_NOT_FOUND', `run ${runId} not found (ecgfaas report --list shows the stored runs)`);
      }
      const report = buildReport(loaded.records, {
        runId, deadlineMs, events: loaded.events, ...(loaded.clientRoundTrips === null ? {} : { clientRoundTrips: loaded.clientRoundTrips }),
      });
      if (flags.json) printJson(report);
      else {
        const started = loaded.manifest === null ? '' : `started ${String(loaded.manifest.startedAt)}\n`;
        process.stdout.write(`${started}${formatReport(report)}`);
      }
    });
}

type Store = { s3: S3Client; bucket: string };

/**
 * A configured S3 (ECGFAAS_S3_ENDPOINT set) or the embedded one over `<store>/s3`, started only for
 * this command. Null when there is no embedded store yet (nothing to read; and not created by a read).
 */
async function withRunStore<T>(storeDir: string, use: (store: Store | null) => Promise<T>): Promise<T> {
  if (process.env.ECGFAAS_S3_ENDPOINT) {
    const settings = s3SettingsFromEnv();
    const s3 = createS3Client(settings);
    try {
      return await use({ s3, bucket: settings.bucket });
    } finally {
      s3.destroy();
    }
  }
  const directory = path.join(storeDir, 's3');
  if (!existsSync(directory)) return use(null);
  const embedded = new EmbeddedS3({ directory, bucket: EMBEDDED_BUCKET });
  const settings = await embedded.start();
  const s3 = createS3Client(settings);
  try {
    return await use({ s3, bucket: settings.bucket });
  } finally {
    s3.destroy();
    await embedded.close();
  }
}

async function withRedis<T>(url: string | undefined, use: (redis: Redis | null) => Promise<T>): Promise<T> {
  if (url === undefined) return use(null);
  // Fail fast: a report should not hang on an unreachable Redis.
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 5000, retryStrategy: () => null });
  redis.on('error', () => {}); // surfaced by the failing command instead
  try {
    await redis.connect();
  } catch (error) {
    redis.disconnect();
    throw new CliError('CLI_REDIS', `cannot reach Redis at ${url}: ${(error as Error).message}`);
  }
  try {
    return await use(redis);
  } finally {
    redis.disconnect();
  }
}

function formatRuns(runs: Array<{ runId: string; segments: number; hasManifest: boolean; hasRoundTrips: boolean }>): string {
  if (runs.length === 0) return 'no runs stored\n';
  const table = new Table({ style: { head: [], border: [] }, head: ['run', 'segments', 'manifest', 'round trips'] });
  for (const run of runs) table.push([run.runId, run.segments, run.hasManifest ? 'yes' : 'no', run.hasRoundTrips ? 'yes' : 'no']);
  return `${table.toString()}\n`;
}
