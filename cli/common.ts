import { existsSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { EcgFaasError } from '../contracts/errors.js';
import { connectRedis } from '../queue/connect.js';
import { DS1_RECORDS, PACED_RECORDS } from '../functions/datasets.js';
import { BeatClassifier } from '../functions/model/index.js';

/** A CLI failure: message for the user, stable code, and the exit code (2 for bad usage). */
export class CliError extends EcgFaasError {
  readonly exitCode: number;

  constructor(code: string, message: string, exitCode = 1) {
    super(code, message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The model used when --model is not given. */
export function defaultModelPath(): string {
  return path.join(PACKAGE_ROOT, 'models', 'default.onnx');
}

/** Resolves --model: a path to an .onnx file, or the name of a shipped model (paper, default). */
export function resolveModelPath(value: string | undefined): string {
  if (value === undefined) return defaultModelPath();
  const shipped = path.join(PACKAGE_ROOT, 'models', `${value}.onnx`);
  if (/^[A-Za-z0-9_-]+$/.test(value) && existsSync(shipped)) return shipped;
  if (!existsSync(value)) throw new CliError('CLI_MODEL_NOT_FOUND', `model ${value} not found (give a path to an .onnx file, or paper or default)`);
  return value;
}

export function requireDirectory(dir: string, what: string): string {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new CliError('CLI_NO_DIRECTORY', `${what} ${dir} is not a directory`);
  }
  return dir;
}

/**
 * Parses --records: a comma-separated list of record names, where DS1 and PACED stand for those
 * sets. Without the flag, every record in the directory that has a header and reference annotations.
 */
export async function resolveRecords(dataDir: string, value: string | undefined): Promise<string[]> {
  if (value === undefined) {
    const files = new Set(await readdir(dataDir));
    const names = [...files].filter((f) => f.endsWith('.hea') && files.has(`${f.slice(0, -4)}.atr`)).map((f) => f.slice(0, -4));
    if (names.length === 0) throw new CliError('CLI_NO_RECORDS', `no records with .hea and .atr files in ${dataDir}`);
    return names.sort();
  }
  const names: string[] = [];
  for (const item of value.split(',').map((s) => s.trim()).filter((s) => s.length > 0)) {
    if (item.toUpperCase() === 'DS1') names.push(...DS1_RECORDS);
    else if (item.toUpperCase() === 'PACED') names.push(...PACED_RECORDS);
    else if (/^[A-Za-z0-9_-]+$/.test(item)) names.push(item);
    else throw new CliError('CLI_BAD_RECORDS', `"${item}" is not a record name`, 2);
  }
  if (names.length === 0) throw new CliError('CLI_BAD_RECORDS', '--records names no record', 2);
  return [...new Set(names)];
}

export function parseInteger(value: string, what: string): number {
  if (!/^-?\d+$/.test(value)) throw new CliError('CLI_BAD_NUMBER', `${what} must be an integer, not "${value}"`, 2);
  return Number(value);
}

/** A commander option parser: an integer within [min, max], else a usage error naming the flag. */
export function integerOption(what: string, min: number, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value) => {
    const n = parseInteger(value, what);
    if (n < min || n > max) throw new CliError('CLI_BAD_NUMBER', `${what} must be ${min}..${max}, not ${n}`, 2);
    return n;
  };
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** Loads --model (a path or a shipped name), runs `use` with it, and always closes it. */
export async function withClassifier<T>(model: string | undefined, use: (classifier: BeatClassifier) => Promise<T>): Promise<T> {
  const classifier = await BeatClassifier.load(resolveModelPath(model));
  try {
    return await use(classifier);
  } finally {
    await classifier.close();
  }
}

/** A commander option parser: a finite number within [min, max], else a usage error naming the flag. */
export function numberOption(what: string, min: number, max = Number.MAX_VALUE): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new CliError('CLI_BAD_NUMBER', `${what} must be a number in ${min}..${max}, not "${value}"`, 2);
    return n;
  };
}

/** --redis, else REDIS_URL; a usage error when neither is a redis:// URL. */
export function redisUrlOf(value: string | undefined): string {
  const url = value ?? process.env.REDIS_URL;
  if (url === undefined || !/^rediss?:\/\//.test(url)) throw new CliError('CLI_NO_REDIS', 'give --redis redis://host:port (or set REDIS_URL)');
  return url;
}

/** A Redis connection for one CLI command: connected (REDIS_UNREACHABLE otherwise), used, closed. */
export async function withRedis<T>(url: string, use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  await connectRedis(redis, url);
  try {
    return await use(redis);
  } finally {
    await redis.quit().catch(() => redis.disconnect());
  }
}
