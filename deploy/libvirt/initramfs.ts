/**
 * The guests' initramfs: one base image per kernel (build-initrd.sh: busybox, modules, our /init),
 * and per guest a copy with a small seed archive appended (the kernel unpacks concatenated cpio
 * archives in order), which carries what must not travel on the kernel command line: the worker's
 * S3 secrets. The seed works the same for every hypervisor and root (9p or disk image), with no
 * extra device in the guest.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { EcgFaasError } from '../../contracts/errors.js';
import { exists, readTrimmed } from '../../worker/facts/index.js';

const run = promisify(execFile);
const HERE = path.dirname(fileURLToPath(import.meta.url));
/** What the base image is made of: a change to any of them makes ensureInitrd build it anew. */
const SOURCES = ['build-initrd.sh', 'guest-init.sh', 'udhcpc.sh'];

export class InitramfsError extends EcgFaasError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('DEPLOY_INITRD_FAILED', message, options);
    this.name = 'InitramfsError';
  }
}

async function sourcesStamp(kernelVersion: string | undefined): Promise<string> {
  const hash = createHash('sha256').update(kernelVersion ?? 'newest');
  for (const source of SOURCES) hash.update(await readFile(path.join(HERE, source)));
  return hash.digest('hex').slice(0, 16);
}

/**
 * The guest initramfs at `file`, built by build-initrd.sh when missing or when it was built from
 * other sources or for another kernel (a stamp beside it, `<file>.stamp`, says which); with
 * keepExisting, only when missing.
 */
export async function ensureInitrd(file: string, kernelVersion?: string, options: { keepExisting?: boolean } = {}): Promise<string> {
  const stamp = await sourcesStamp(kernelVersion);
  const present = await exists(file);
  // keepExisting: an initramfs the user made or chose is theirs, however it was built.
  if (present && options.keepExisting) return file;
  const built = await readTrimmed(`${file}.stamp`);
  if (present && built === stamp) return file;
  try {
    await run('bash', [path.join(HERE, 'build-initrd.sh'), file, ...(kernelVersion !== undefined ? [kernelVersion] : [])]);
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim() ?? '';
    throw new InitramfsError(`building the guest initramfs ${file} failed (needs Debian's busybox-static, cpio, kmod and a linux-image package): ${stderr || (error as Error).message}`, { cause: error });
  }
  await writeFile(`${file}.stamp`, `${stamp}\n`);
  return file;
}

/** A cpio (newc) archive of the files under `dir`, owned by root, by Debian's cpio. */
async function cpioOf(dir: string, names: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('cpio', ['-o', '-H', 'newc', '--quiet', '-R', '0:0'], { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    child.on('error', (error) => reject(new InitramfsError(`cpio: ${error.message} (Debian: apt-get install cpio)`, { cause: error })));
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new InitramfsError(`cpio exited ${code}: ${stderr.trim()}`))));
    child.stdin.end(`${names.join('\n')}\n`);
  });
}

/**
 * Writes `out` (mode 0600): the base initramfs followed by a gzip'd archive of `files` (paths
 * inside the guest's initramfs, e.g. `seed/worker.env`, each mode 0600).
 */
export async function seededInitrd(base: string, out: string, files: Record<string, string>): Promise<string> {
  const staging = await mkdtemp(path.join(tmpdir(), 'ecgfaas-seed-'));
  try {
    const names = new Set<string>();
    for (const [name, content] of Object.entries(files)) {
      if (path.isAbsolute(name) || name.split('/').includes('..')) throw new InitramfsError(`seed file ${name} must be a relative path inside the initramfs`);
      const file = path.join(staging, name);
      await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
      for (let dir = path.dirname(name); dir !== '.'; dir = path.dirname(dir)) names.add(dir);
      await writeFile(file, content, { mode: 0o600 });
      names.add(name);
    }
    // Directories before their files, as the kernel's unpacker creates them in archive order.
    const archive = await cpioOf(staging, [...names].sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b)));
    const combined = Buffer.concat([await readFile(base), gzipSync(archive)]);
    await mkdir(path.dirname(out), { recursive: true });
    await writeFile(out, combined, { mode: 0o600 });
    await chmod(out, 0o600);
    return out;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
