/**
 * libvirt through `virsh` (Debian's libvirt-clients): any connection URI (`qemu:///system`,
 * `qemu+ssh://host/system`, `xen:///system`, `test:///default`), one call per command, its errors
 * turned into ours with stable codes. virsh rather than a binding: the maintained Node bindings need
 * a native build against libvirt's headers, and every call here is seconds apart (lifecycle, not a
 * hot path), so a process per call costs nothing that matters.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { EcgFaasError } from '../../contracts/errors.js';

const run = promisify(execFile);

export type LibvirtErrorCode = 'LIBVIRT_MISSING' | 'LIBVIRT_UNREACHABLE' | 'VM_NOT_FOUND' | 'VM_EXISTS' | 'VM_BAD_STATE' | 'LIBVIRT_FAILED';

export class LibvirtError extends EcgFaasError {
  constructor(code: LibvirtErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'LibvirtError';
  }
}

/** Our error for what virsh printed on stderr (its lines start with `error: `). */
export function libvirtError(stderr: string, what: string): LibvirtError {
  const message = stderr.split('\n').map((line) => line.replace(/^error:\s*/, '').trim()).filter((line) => line !== '').join('; ') || 'virsh failed';
  const code: LibvirtErrorCode = /failed to connect to the hypervisor|Failed to connect socket|no connection driver available/i.test(message) ? 'LIBVIRT_UNREACHABLE'
    : /Domain not found|no domain with matching|failed to get domain/i.test(message) ? 'VM_NOT_FOUND'
      : /already exists/i.test(message) ? 'VM_EXISTS'
        : /Requested operation is not valid|domain is not running|already running|not paused/i.test(message) ? 'VM_BAD_STATE'
          : 'LIBVIRT_FAILED';
  return new LibvirtError(code, `${what}: ${message}`);
}

export class Virsh {
  readonly uri: string;

  constructor(uri: string) {
    this.uri = uri;
  }

  /** Runs `virsh -c URI ARGS...`; resolves to stdout, rejects with a LibvirtError. */
  async call(args: readonly string[], what = `virsh ${args[0] ?? ''}`): Promise<string> {
    try {
      const { stdout } = await run('virsh', ['-q', '-c', this.uri, ...args], { maxBuffer: 16 * 1024 * 1024, timeout: 120_000 });
      return stdout;
    } catch (error) {
      const failure = error as NodeJS.ErrnoException & { stderr?: string };
      if (failure.code === 'ENOENT') throw new LibvirtError('LIBVIRT_MISSING', 'virsh is not installed (Debian: apt-get install libvirt-clients)', { cause: error });
      throw libvirtError(failure.stderr ?? failure.message, what);
    }
  }

  /**
   * Several commands in ONE virsh process (`virsh -c URI "a; b; c"`): the only way to run a
   * lifecycle on libvirt's test driver, whose state lives in its process. virsh's exit code is the
   * last command's, so each command's output is returned for the caller to check.
   */
  async script(commands: readonly string[]): Promise<{ stdout: string; stderr: string; code: number }> {
    try {
      const { stdout, stderr } = await run('virsh', ['-c', this.uri, commands.join(' ; ')], { maxBuffer: 16 * 1024 * 1024, timeout: 120_000 });
      return { stdout, stderr, code: 0 };
    } catch (error) {
      const failure = error as NodeJS.ErrnoException & { stdout?: string; stderr?: string; code?: number | string };
      if (failure.code === 'ENOENT') throw new LibvirtError('LIBVIRT_MISSING', 'virsh is not installed (Debian: apt-get install libvirt-clients)', { cause: error });
      return { stdout: failure.stdout ?? '', stderr: failure.stderr ?? '', code: typeof failure.code === 'number' ? failure.code : 1 };
    }
  }

  /** Domain name → state as virsh says it (`running`, `paused`, `shut off`, ...). */
  async list(): Promise<Map<string, string>> {
    const out = await this.call(['list', '--all'], 'virsh list');
    const domains = new Map<string, string>();
    for (const line of out.split('\n')) {
      const match = /^\s*(\S+)\s+(\S+)\s+(.+?)\s*$/.exec(line);
      if (match !== null) domains.set(match[2] as string, match[3] as string);
    }
    return domains;
  }
}
