/** `ecgfaas image build` takes its Debian archive from the machine's apt sources (or --mirror): no mirror is named in the code. */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aptMirror } from '../deploy/image/index.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ecgfaas-apt-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('aptMirror', () => {
  it('finds the Debian archive in deb822 sources, past the security archive and third-party repositories', async () => {
    const root = path.join(dir, 'deb822');
    await mkdir(path.join(root, 'sources.list.d'), { recursive: true });
    await writeFile(path.join(root, 'sources.list.d', 'a-nodesource.sources'), 'Types: deb\nURIs: https://repo.example.org/node_20.x\nSuites: nodistro\nComponents: main\n');
    await writeFile(path.join(root, 'sources.list.d', 'debian.sources'),
      'Types: deb\nURIs: http://archive.example.net/debian-security\nSuites: bookworm-security\n\nTypes: deb\nURIs: http://archive.example.net/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n');
    expect(await aptMirror(root)).toBe('http://archive.example.net/debian');
  });

  it('reads one-line sources (with options) too, and says null when there is no Debian archive', async () => {
    const root = path.join(dir, 'list');
    await mkdir(root, { recursive: true });
    await writeFile(path.join(root, 'sources.list'), '# deb http://commented.example/debian bookworm main\ndeb [arch=amd64] https://mirror.example.com/debian bookworm main\n');
    expect(await aptMirror(root)).toBe('https://mirror.example.com/debian');
    expect(await aptMirror(path.join(dir, 'nothing'))).toBeNull();
  });

  it('on this machine, is what its apt uses (or null on a machine without Debian sources)', async () => {
    const found = await aptMirror();
    expect(found === null || /^https?:\/\/.+\/debian$/.test(found), String(found)).toBe(true);
  });
});
