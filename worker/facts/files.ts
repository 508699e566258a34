/** Reading /proc and /sys: a file that is missing or unreadable is an answer ("not here"), not an error. */
import { access, readFile } from 'node:fs/promises';

export async function readOrNull(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch {
    return null;
  }
}

export async function readTrimmed(file: string): Promise<string | null> {
  return (await readOrNull(file))?.trim() ?? null;
}

export async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}
