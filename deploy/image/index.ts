/**
 * Guest root images (`ecgfaas image build`): Debian from its packages (debootstrap), Debian's
 * Node.js, and the platform under /opt/ecgfaas, as a raw ext4 file that libvirt guests of any
 * hypervisor attach read-only (build-rootfs.sh says how). A shell script does the work because it
 * is a sequence of Debian tools run as root (debootstrap, chroot, mkfs.ext4); this module checks
 * what it needs first and turns its failures into coded errors.
 */
import { spawn } from 'node:child_process';
import { access, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EcgFaasError } from '../../contracts/errors.js';

const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'build-rootfs.sh');
/** The default place of the root image (`--disk` of `ecgfaas deploy --driver libvirt` defaults to it for Xen). */
export const DEFAULT_ROOT_IMAGE = '.ecgfaas/guest/rootfs.img';

export class ImageError extends EcgFaasError {
  constructor(code: 'IMAGE_NEEDS_ROOT' | 'IMAGE_TOOLS_MISSING' | 'IMAGE_BUILD_FAILED', message: string) {
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
  mirror?: string;
  /** Each step the script reports ("debootstrap trixie from ...", ...). */
  onStep?: (step: string) => void;
}

async function onPath(command: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    if (await access(path.join(dir, command)).then(() => true, () => false)) return true;
  }
  return false;
}

/** Builds a root image; resolves with its path and size once it is complete. */
export async function buildRootImage(options: RootImageOptions): Promise<{ image: string; bytes: number; seconds: number }> {
  if (process.getuid?.() !== 0) throw new ImageError('IMAGE_NEEDS_ROOT', 'building a root image needs root (debootstrap and chroot)');
  const missing = [];
  for (const [command, pkg] of [['debootstrap', 'debootstrap'], ['mkfs.ext4', 'e2fsprogs'], ['chroot', 'coreutils']] as const) {
    if (!(await onPath(command))) missing.push(pkg);
  }
  if (missing.length > 0) throw new ImageError('IMAGE_TOOLS_MISSING', `building a root image needs Debian's ${missing.join(', ')} (apt-get install ${missing.join(' ')})`);
  const started = Date.now();
  const out = path.resolve(options.out);
  const args = [SCRIPT, out, path.resolve(options.checkout), options.suite ?? 'trixie', ...(options.mirror !== undefined ? [options.mirror] : [])];
  const tail: string[] = [];
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
        tail.push(line);
        if (tail.length > 20) tail.shift();
      }
    });
    child.on('error', reject);
    child.on('close', resolve);
  });
  if (code !== 0) throw new ImageError('IMAGE_BUILD_FAILED', `building ${out} failed (exit ${code}):\n  ${tail.join('\n  ')}`);
  return { image: out, bytes: (await stat(out)).size, seconds: (Date.now() - started) / 1000 };
}
