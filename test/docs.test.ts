import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { GATEWAY_ERRORS } from '../gateway/errors.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

describe('docs/API.md', () => {
  it('lists every error code the gateway answers with, with its status', async () => {
    const page = await readFile(path.join(root, 'docs', 'API.md'), 'utf8');
    for (const [code, { status }] of Object.entries(GATEWAY_ERRORS)) {
      expect(page, code).toMatch(new RegExp(`\\|\\s*${status}\\s*\\|\\s*\`${code}\``));
    }
  });

  it('README starts with the two commands: the demo and the tests', async () => {
    const readme = await readFile(path.join(root, 'README.md'), 'utf8');
    const firstBlock = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
    const commands = firstBlock.split('\n').filter((line) => line.trim() !== '').map((line) => line.replace(/#.*$/, '').trim());
    expect(commands).toEqual(['npm run demo', 'npm test']);
    const pkg = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.demo).toContain('ecgfaas.js demo');
    expect(pkg.scripts.test).toBe('bash test/run.sh');
  });
});
