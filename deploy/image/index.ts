/**
 * Guest root images (`ecgfaas image build`): Debian from its packages (debootstrap), Debian's
 * Node.js, and the platform under /opt/ecgfaas, as a raw ext4 file that libvirt guests of any
 * hypervisor attach read-only (build-rootfs.sh says how). A shell script does the work because it
 * is a sequence of Debian tools run as root (debootstrap, chroot, mkfs.ext4); this module checks
 * what it needs first and turns its failures into coded errors.
 */
import { execFile, spawn } from 'node:child_process';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { EcgFaasError } from '../../contracts/errors.js';
import { exists, readOrNull } from '../../worker/facts/index.js';

const run = promisify(execFile);
const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'build-rootfs.sh');
/** The default place of the root image (`--disk` of `ecgfaas deploy --driver libvirt` defaults to it for Xen). */
export const DEFAULT_ROOT_IMAGE = '.ecgfaas/guest/rootfs.img';

export class ImageError extends EcgFaasError {
  constructor(code: 'IMAGE_NEEDS_ROOT' | 'IMAGE_TOOLS_MISSING' | 'IMAGE_BUILD_FAILED' | 'IMAGE_NO_MIRROR', message: string) {
    super(code, message);
    this.name = 'ImageError';
  }
}

export interface RootImageOptions {
  /** The image file to write (replaced when it exists). */
  out: string;
  /** The platform checkout to put in the image. */
  checkout: string;
  /** Debian suite (default trixie: its nodejs is 20.19, which the platform needs). */
  suite?: string;
  /** Debian archive URL (default: the one this machine's apt sources use, see aptMirror). */
  mirror?: string;
  /** Each step the script reports ("debootstrap trixie from ...", ...). */
  onStep?: (step: string) => void;
}

/**
 * The Debian archive this machine's apt already uses: the first source (deb822 `URIs:` in
 * /etc/apt/sources.list.d/*.sources, or a `deb URL SUITE` line of a .list file) whose path ends in
 * `/debian` (the security archive and third-party repositories do not). Null when there is none.
 * No mirror is named here: an image is built from wherever the host's own packages come from.
 */
export async function aptMirror(root = '/etc/apt'): Promise<string | null> {
  const files = [path.join(root, 'sources.list')];
  const dir = path.join(root, 'sources.list.d');
  for (const name of (await readdir(dir).catch(() => [] as string[])).sort()) {
    if (name.endsWith('.sources') || name.endsWith('.list')) files.push(path.join(dir, name));
  }
  for (const file of files) {
    const text = await readFile(file, 'utf8').catch(() => '');
    const uris = file.endsWith('.sources')
      ? [...text.matchAll(/^URIs:\s*(.+)$/gm)].flatMap((match) => (match[1] as string).trim().split(/\s+/))
      : [...text.matchAll(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+/gm)].map((match) => match[1] as string);
    const archive = uris.find((uri) => /^https?:\/\/[^/]+(\/.*)?\/debian\/?$/.test(uri));
    if (archive !== undefined) return archive.replace(/\/$/, '');
  }
  return null;
}

async function onPath(command: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    if (await exists(path.join(dir, command))) return true;
  }
  return false;
}

/**
 * What an image was built from, kept beside it (`<image>.json`): guests run the image's copy of the
 * platform, so a deploy says when the checkout has moved on since (staleImageWarning).
 */
export interface ImageProvenance {
  builtAt: string;
  suite: string;
  /** Debian's Node.js in the image. */
  node: string | null;
  /** The checkout's commit, and whether it had uncommitted changes (null outside git). */
  commit: string | null;
  dirty: boolean | null;
}

async function checkoutState(checkout: string): Promise<Pick<ImageProvenance, 'commit' | 'dirty'>> {
  try {
    const { stdout: head } = await run('git', ['-C', checkout, 'rev-parse', 'HEAD']);
    const { stdout: changes } = await run('git', ['-C', checkout, 'status', '--porcelain', '--untracked-files=no']);
    return { commit: head.trim(), dirty: changes.trim() !== '' };
  } catch {
    return { commit: null, dirty: null };
  }
}

export function provenanceFile(image: string): string {
  return `${image}.json`;
}

/** The provenance of an image, or null when it has none (built by hand, or by an older version). */
export async function readProvenance(image: string): Promise<ImageProvenance | null> {
  const text = await readOrNull(provenanceFile(image));
  if (text === null) return null;
  try {
    return JSON.parse(text) as ImageProvenance;
  } catch {
    return null;
  }
}

/** A line for the user when the image does not hold this checkout's code (or cannot say), else null. */
export async function staleImageWarning(image: string, checkout: string): Promise<string | null> {
  const [provenance, now] = await Promise.all([readProvenance(image), checkoutState(checkout)]);
  if (provenance === null) return `root image ${image} has no provenance (${provenanceFile(image)}): it may hold other code than this checkout; rebuild it with \`ecgfaas image build\``;
  if (now.commit !== null && provenance.commit !== now.commit) {
    return `root image ${image} was built from commit ${provenance.commit?.slice(0, 12) ?? 'unknown'} on ${provenance.builtAt}, this checkout is at ${now.commit.slice(0, 12)}: the guests run the image's code; rebuild it with \`ecgfaas image build\``;
  }
  if (provenance.dirty === true || now.dirty === true) return `root image ${image}: the checkout had uncommitted changes when the image was built, or has now: the guests may run other code than this checkout`;
  return null;
}

/** Builds a root image and its provenance file; resolves once both are complete. */
export async function buildRootImage(options: RootImageOptions): Promise<{ image: string; bytes: number; seconds: number } & ImageProvenance> {
  if (process.getuid?.() !== 0) throw new ImageError('IMAGE_NEEDS_ROOT', 'building a root image needs root (debootstrap and chroot)');
  const missing = [];
  for (const [command, pkg] of [['debootstrap', 'debootstrap'], ['mkfs.ext4', 'e2fsprogs'], ['chroot', 'coreutils']] as const) {
    if (!(await onPath(command))) missing.push(pkg);
  }
  if (missing.length > 0) throw new ImageError('IMAGE_TOOLS_MISSING', `building a root image needs Debian's ${missing.join(', ')} (apt-get install ${missing.join(' ')})`);
  const started = Date.now();
  const out = path.resolve(options.out);
  // The checkout as it is when the copy into the image starts.
  const state = await checkoutState(path.resolve(options.checkout));
  const mirror = options.mirror ?? await aptMirror();
  if (mirror === null) {
    throw new ImageError('IMAGE_NO_MIRROR', 'no Debian archive in this machine\'s apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d): give one with --mirror URL');
  }
  const args = [SCRIPT, out, path.resolve(options.checkout), options.suite ?? 'trixie', mirror];
  const tail: string[] = [];
  let node: string | null = null;
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn('bash', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let pending = '';
    child.stderr.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        const step = /^ecgfaas-image: (.*)$/.exec(line);
        if (step !== null) options.onStep?.(step[1] as string);
        node = /^ecgfaas-image: Debian's Node\.js in the image: (\S+)/.exec(line)?.[1] ?? node;
        tail.push(line);
        if (tail.length > 20) tail.shift();
      }
    });
    child.on('error', reject);
    child.on('close', resolve);
  });
  if (code !== 0) throw new ImageError('IMAGE_BUILD_FAILED', `building ${out} failed (exit ${code}):\n  ${tail.join('\n  ')}`);
  const provenance: ImageProvenance = { builtAt: new Date().toISOString(), suite: options.suite ?? 'trixie', node, ...state };
  await writeFile(provenanceFile(out), `${JSON.stringify(provenance, null, 2)}\n`);
  return { image: out, bytes: (await stat(out)).size, seconds: (Date.now() - started) / 1000, ...provenance };
}
