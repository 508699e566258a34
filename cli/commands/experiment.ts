/** `ecgfaas experiment run FILE` and `ecgfaas experiment ls`: the paper's tables as re-runnable experiments. */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import {
  formatMarkdown, loadSpec, renderFigures, resolveSpec, resultJson, runExperiment, type ExperimentResult, type GuestOptions,
} from '../../experiment/index.js';
import { CliError, numberOption, integerOption, PACKAGE_ROOT, printJson, requireDirectory, resolveRecords } from '../common.js';
import { abortOnSignal, createLogger } from '../runtime.js';

interface RunFlags extends GuestOptions {
  quick?: boolean;
  repeats?: number;
  scale?: number;
  rows?: string;
  store: string;
  json?: boolean;
  out?: string;
  data?: string;
  records?: string;
}

const GUEST_FLAGS = ['connect', 'disk', 'bridge', 'guestNet', 'guestRedis', 'guestS3Endpoint', 'bootTimeoutS', 'bootConcurrency'] as const;

/** Where the shipped specs live. */
export const PAPER_SPECS = path.join(PACKAGE_ROOT, 'experiments', 'paper');

// Spec and option mistakes are usage errors (exit 2); a run that fails is exit 1.
const USAGE_CODES = new Set(['EXPERIMENT_UNREADABLE', 'EXPERIMENT_INVALID', 'EXPERIMENT_BAD_OPTION']);

function asUsage<T>(work: () => Promise<T>): Promise<T> {
  return work().catch((error: { code?: string; message?: string }) => {
    if (USAGE_CODES.has(error.code ?? '')) throw new CliError(error.code as string, error.message ?? String(error), 2);
    throw error;
  });
}

export function registerExperiment(program: Command): void {
  const experiment = program.command('experiment').description('The reference paper\'s experiments (Tables I-VIII) as specs: run them here or on KVM and Xen hosts, with confidence intervals and tests');

  experiment
    .command('run <file>')
    .description('Run an experiment spec: for each row and repeat bring up the stack and the row\'s workers or VMs, replay, drain, tear down; then the table with bootstrap intervals, tests between rows and figures')
    .option('--quick', 'the spec\'s short version (a first look, tests): a few minutes')
    .option('--repeats <n>', 'repeats per row (default: the spec\'s)', integerOption('--repeats', 1, 100))
    .option('--scale <f>', 'the host\'s share of the paper\'s 8-thread host (default: the spec\'s; 1 = the paper\'s sizes)', numberOption('--scale', 0.01, 4))
    .option('--rows <ids>', 'only these rows (comma-separated ids)')
    .option('--store <dir>', 'local state: each run\'s records in the embedded S3 (<dir>/s3), logs (<dir>/logs)', '.ecgfaas')
    .option('--data <dir>', 'directory of MIT-BIH records to replay (default: the shipped excerpt)')
    .option('--records <list>', 'records to replay (default: the spec\'s, else all in --data)')
    .option('--out <dir>', 'write <experiment>.md, .json and the figures (density and CDF, SVG) there (each run\'s report goes to reports/<run>/ as after a demo)')
    .option('--json', 'print one JSON object on stdout')
    .option('--connect <uri>', 'libvirt rows: connection URI (default qemu:///system; Xen rows xen:///system)')
    .option('--disk <image>', 'libvirt rows: the guests\' root image (`ecgfaas image build`; default: KVM and QEMU guests see the host\'s root over 9p)')
    .option('--bridge <name>', 'libvirt rows: a host bridge for the guests (default: QEMU user networking; Xen: xenbr0)')
    .option('--guest-net <mode>', 'libvirt rows: user, dhcp or static:ADDR/PREFIX:GATEWAY[:DNS]')
    .option('--guest-redis <url>', 'libvirt rows on a bridge: Redis as the guests reach it (give the stack one with REDIS_URL)')
    .option('--guest-s3-endpoint <url>', 'libvirt rows on a bridge: S3 as the guests reach it (give the stack one with ECGFAAS_S3_ENDPOINT)')
    .option('--boot-timeout-s <s>', 'libvirt rows: how long a guest may take to start its worker', integerOption('--boot-timeout-s', 10, 3600), 600)
    .option('--boot-concurrency <n>', 'libvirt rows: guests booting at once', integerOption('--boot-concurrency', 1, 64), 2)
    .action(async (file: string, flags: RunFlags) => {
      const spec = await asUsage(() => loadSpec(file));
      const resolved = await asUsage(async () => resolveSpec(spec, {
        ...(flags.quick ? { quick: true } : {}), ...(flags.repeats !== undefined ? { repeats: flags.repeats } : {}),
        ...(flags.scale !== undefined ? { scale: flags.scale } : {}),
        ...(flags.rows !== undefined ? { rows: flags.rows.split(',').map((id) => id.trim()).filter((id) => id !== '') } : {}),
      }));
      const dataDir = requireDirectory(flags.data ?? path.join(PACKAGE_ROOT, 'data', 'excerpt'), '--data');
      const records = flags.records === undefined ? undefined : await resolveRecords(dataDir, flags.records);
      const logger = createLogger('experiment', process.env.ECGFAAS_LOG_LEVEL ?? 'warn');
      const abort = abortOnSignal();
      const tty = !flags.json && process.stderr.isTTY === true;
      const runsPlanned = resolved.rows.length * resolved.repeats;
      const packetsPerRun = (row: { monitors: number }) => row.monitors * resolved.packetsPerMonitor;
      let bar: cliProgress.SingleBar | null = null;
      let done = 0;
      let runIndex = 0;
      // Each run's latency report, as after `ecgfaas demo` (the records stay in the store for `report --run`).
      const reportsDir = 'reports';
      process.stderr.write(`experiment ${spec.experiment} (Table ${spec.paperTable}, ${spec.metric}): ${resolved.rows.length} rows × ${resolved.repeats} repeats of ${resolved.durationS} s + ${resolved.warmupS} s warm-up\n  ${resolved.rule}\n`);
      let result: ExperimentResult;
      try {
        result = await runExperiment(resolved, {
          store: flags.store, dataDir, records, logger, reportsDir, signal: abort.signal,
          guests: Object.fromEntries(GUEST_FLAGS.filter((key) => flags[key] !== undefined).map((key) => [key, flags[key]])) as GuestOptions,
          onRunStart: ({ row, repeat, runId }) => {
            runIndex += 1;
            if (tty) {
              bar?.stop();
              process.stderr.write(`run ${runIndex}/${runsPlanned} (at most): ${row.id} repeat ${repeat}: ${runId}\n`);
              bar = new cliProgress.SingleBar({
                stream: process.stderr, format: '  [{bar}] {value}/{total} packets | misses {misses} | p99 {p99} ms', barsize: 24, hideCursor: true, fps: 5,
              }, cliProgress.Presets.shades_classic);
              bar.start(packetsPerRun(row), 0, { misses: 0, p99: '-' });
            } else if (!flags.json) {
              process.stderr.write(`run ${runIndex}: ${row.id} repeat ${repeat}: ${runId}\n`);
            }
          },
          onProgress: (progress) => bar?.update(progress.sent, { misses: progress.deadlineMisses, p99: progress.p99Ms === null ? '-' : progress.p99Ms.toFixed(1) }),
          onRunDone: ({ outcome }) => {
            bar?.stop();
            bar = null;
            done += 1;
            if (!flags.json) process.stderr.write(`  done: ${outcome.packets.processed} processed, ${outcome.packets.lost} lost, deadline misses ${(outcome.replay.deadlineMissRate * 100).toFixed(2)} %\n`);
          },
        });
      } finally {
        (bar as cliProgress.SingleBar | null)?.stop();
        abort.dispose();
      }
      logger.info({ runs: done }, 'experiment done');
      const command = ['ecgfaas', ...process.argv.slice(2)].join(' ');
      let figures: { density: string; cdf: string } | undefined;
      if (flags.out !== undefined) {
        await mkdir(flags.out, { recursive: true });
        const rendered = await renderFigures(result);
        if (rendered !== null) {
          figures = { density: `${spec.experiment}-density.svg`, cdf: `${spec.experiment}-cdf.svg` };
          await writeFile(path.join(flags.out, figures.density), rendered.density);
          await writeFile(path.join(flags.out, figures.cdf), rendered.cdf);
        }
        await writeFile(path.join(flags.out, `${spec.experiment}.json`), `${JSON.stringify({ ...resultJson(result), command }, null, 2)}\n`);
        await writeFile(path.join(flags.out, `${spec.experiment}.md`), formatMarkdown(result, { command, ...(figures !== undefined ? { figures } : {}) }));
      }
      if (flags.json) printJson(resultJson(result));
      else process.stdout.write(formatMarkdown(result, { command, ...(figures !== undefined ? { figures } : {}) }));
    });

  experiment
    .command('ls')
    .description('List the shipped experiment specs (experiments/paper), each validated')
    .option('--dir <dir>', 'directory of specs', PAPER_SPECS)
    .option('--json', 'print a JSON array of {file, experiment, paperTable}')
    .action(async (flags: { dir: string; json?: boolean }) => {
      const dir = requireDirectory(flags.dir, '--dir');
      const files = (await readdir(dir)).filter((name) => /\.ya?ml$/.test(name)).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
      const entries = [];
      for (const name of files) {
        const file = path.join(dir, name);
        const spec = await asUsage(() => loadSpec(file));
        entries.push({ file: path.relative(process.cwd(), file) || file, experiment: spec.experiment, paperTable: spec.paperTable, title: spec.title, metric: spec.metric, rows: spec.rows.map((row) => row.id) });
      }
      if (flags.json) printJson(entries);
      else {
        if (entries.length === 0) throw new CliError('CLI_NO_SPECS', `no experiment specs (*.yaml) in ${dir}`);
        for (const entry of entries) process.stdout.write(`${entry.file}  Table ${entry.paperTable.padEnd(4)} ${entry.metric.padEnd(9)} ${entry.title} (rows: ${entry.rows.join(', ')})\n`);
      }
    });
}
