/** `ecgfaas image build`: a guest root image from Debian's packages (deploy/image). */
import { Command } from 'commander';
import { buildRootImage, DEFAULT_ROOT_IMAGE } from '../../deploy/image/index.js';
import { PACKAGE_ROOT, printJson } from '../common.js';

export function registerImage(program: Command): void {
  const image = program.command('image').description('Guest root images for `ecgfaas deploy --driver libvirt --disk IMAGE`');
  image
    .command('build')
    .description('Build a root image (raw ext4) from Debian packages: debootstrap minbase, Debian\'s nodejs, and this platform under /opt/ecgfaas. Needs root and network access to the Debian mirror; ~2-4 min.')
    .option('--out <file>', 'image to write', DEFAULT_ROOT_IMAGE)
    .option('--suite <suite>', 'Debian suite (trixie\'s nodejs is 20.19, which the platform needs)', 'trixie')
    .option('--mirror <url>', 'Debian archive URL (default: the one this machine\'s apt sources use)')
    .option('--json', 'print the result as JSON')
    .action(async (flags: { out: string; suite: string; mirror?: string; json?: boolean }) => {
      const result = await buildRootImage({
        out: flags.out, checkout: PACKAGE_ROOT, suite: flags.suite, ...(flags.mirror !== undefined ? { mirror: flags.mirror } : {}),
        onStep: (step) => process.stderr.write(`${step}\n`),
      });
      if (flags.json) printJson(result);
      else process.stdout.write(`${result.image}: ${(result.bytes / 2 ** 20).toFixed(0)} MiB, Node ${result.node ?? '?'}, commit ${result.commit?.slice(0, 12) ?? 'unknown'}${result.dirty ? ' (with uncommitted changes)' : ''}, built in ${result.seconds.toFixed(0)} s\n`);
    });
}
