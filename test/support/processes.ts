import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from './data.js';

const run = promisify(execFile);
const bin = path.join(repoRoot, 'bin', 'ecgfaas.js');

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** `ecgfaas ARGS` as a user runs it (a child process from the repository root); a failure is a result, not a throw. */
export async function ecgfaas(args: readonly string[], options: { env?: NodeJS.ProcessEnv } = {}): Promise<CliRun> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { cwd: repoRoot, maxBuffer: 64 * 1024 * 1024, ...(options.env ? { env: options.env } : {}) });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failure = error as CliRun;
    return { code: failure.code, stdout: failure.stdout, stderr: failure.stderr };
  }
}

/** Whether a process of this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
