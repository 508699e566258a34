import { existsSync } from 'node:fs';
import path from 'node:path';
import Table from 'cli-table3';
import type { Command } from 'commander';
import type { EpisodeManifest } from '../../contracts/episode.js';
import { EmbeddedS3 } from '../../storage/embedded-s3.js';
import { EpisodeStore } from '../../storage/episodes/index.js';
import { isEcgFaasError } from '../../contracts/errors.js';
import { createS3Client, s3SettingsFromEnv } from '../../storage/s3.js';
import { CliError, printJson } from '../common.js';

interface StoreFlags {
  store?: string;
  s3Endpoint?: string;
  bucket?: string;
}

interface LsFlags extends StoreFlags {
  monitor?: string;
  json?: boolean;
}

interface GetFlags extends StoreFlags {
  out: string;
}

/** Where the demo keeps its state; its embedded S3 data lives in `<store>/s3`. */
const DEFAULT_STORE = '.ecgfaas';
const DEFAULT_BUCKET = 'ecgfaas';
/** A CLI should fail within seconds, not retry for the platform's two minutes, when S3 is down. */
const CLI_RETRY = { deadlineMs: 10_000 };
// No colour codes: the table is read in terminals, logs and docs alike.
const PLAIN = { head: [] as string[], border: [] as string[] };

function storeOptions(command: Command): Command {
  return command
    .option('--store <dir>', `state directory of the demo; its embedded S3 data is <dir>/s3 (default ${DEFAULT_STORE})`)
    .option('--s3-endpoint <url>', 'an S3 endpoint (MinIO, ...) instead of the embedded store; also ECGFAAS_S3_ENDPOINT, with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY')
    .option('--bucket <name>', `bucket of the episodes (default ECGFAAS_S3_BUCKET or ${DEFAULT_BUCKET})`);
}

/**
 * Opens the episode store the flags name: an S3 endpoint when one is given (flag or environment),
 * else the demo's embedded store over `<store>/s3`, started for this command only (so this works
 * after the platform has stopped) and always closed.
 */
async function withEpisodeStore<T>(flags: StoreFlags, use: (store: EpisodeStore) => Promise<T>): Promise<T> {
  if (flags.s3Endpoint !== undefined || process.env.ECGFAAS_S3_ENDPOINT) {
    const settings = s3SettingsFromEnv(process.env, {
      ...(flags.s3Endpoint === undefined ? {} : { endpoint: flags.s3Endpoint }),
      ...(flags.bucket === undefined ? {} : { bucket: flags.bucket }),
    });
    const client = createS3Client(settings);
    try {
      return await use(new EpisodeStore({ client, bucket: settings.bucket, retry: CLI_RETRY }));
    } finally {
      client.destroy();
    }
  }
  const directory = path.resolve(flags.store ?? DEFAULT_STORE, 's3');
  // Starting the embedded store would create the directory: refuse instead, the path is likely mistyped.
  if (!existsSync(directory)) {
    throw new CliError('CLI_NO_STORE', `no episode store at ${directory} (give --store DIR, the demo's state directory, or --s3-endpoint)`);
  }
  const embedded = new EmbeddedS3({ directory, bucket: flags.bucket ?? DEFAULT_BUCKET });
  const settings = await embedded.start();
  const client = createS3Client(settings);
  try {
    return await use(new EpisodeStore({ client, bucket: settings.bucket, retry: CLI_RETRY }));
  } finally {
    client.destroy();
    await embedded.close();
  }
}

export function registerEpisodesCommand(program: Command): void {
  const episodes = program
    .command('episodes')
    .description('List the abnormal-rhythm episodes stored in S3, and download one as a WFDB record (.hea, .dat, .atr).');

  storeOptions(episodes
    .command('ls')
    .description('List stored episodes, newest first.')
    .option('--monitor <id>', 'only the episodes of this monitor')
    .option('--json', 'print a JSON array of episode manifests on stdout'))
    .action(async (flags: LsFlags) => {
      const manifests = await withEpisodeStore(flags, (store) => store.list(flags.monitor === undefined ? {} : { monitor: flags.monitor }));
      if (flags.json) printJson(manifests);
      else process.stdout.write(formatEpisodes(manifests));
    });

  storeOptions(episodes
    .command('get')
    .description('Download a closed episode as a WFDB record into a directory; prints the paths of the files.')
    .argument('<id>', 'episode id, as `episodes ls` shows it')
    .requiredOption('--out <dir>', 'directory for <record>.hea, <record>.dat and <record>.atr'))
    .action(async (id: string, flags: GetFlags) => {
      const files = await withEpisodeStore(flags, async (store) => {
        try {
          return await store.download(id, flags.out);
        } catch (error) {
          if (isEcgFaasError(error) && error.code === 'EPISODE_NOT_FOUND') {
            throw new CliError('CLI_EPISODE_NOT_FOUND', `no episode ${id} (list them with: ecgfaas episodes ls)`);
          }
          if (isEcgFaasError(error) && error.code === 'EPISODE_OPEN') {
            throw new CliError('CLI_EPISODE_OPEN', `episode ${id} is still open; its record is written when it ends`);
          }
          throw error;
        }
      });
      process.stdout.write(`${files.join('\n')}\n`);
    });
}

export function formatEpisodes(manifests: readonly EpisodeManifest[]): string {
  if (manifests.length === 0) return 'no episodes\n';
  const table = new Table({ style: PLAIN, head: ['id', 'start (UTC)', 'seconds', 'state', 'N', 'S', 'V', 'F', 'Q', 'abnormal', 'record'] });
  for (const m of manifests) {
    const seconds = (m.samples / m.sampleRate).toFixed(1);
    const { N, S, V, F, Q, abnormal } = m.beats;
    table.push([m.id, m.start.replace('T', ' ').replace('Z', ''), seconds, m.endReason === null ? 'open' : `ended (${m.endReason})`, N, S, V, F, Q, abnormal, m.record ?? '-']);
  }
  return `${table.toString()}\n`;
}
