/**
 * `ecgfaas`: one CLI for every user-facing job. Thin by design: parse (commander), call a
 * component's API, print. Exit codes: 0 success, 1 a failure with a stable error code, 2 bad usage.
 */
import { createRequire } from 'node:module';
import { Command, CommanderError } from 'commander';
import { isEcgFaasError } from '../contracts/errors.js';
import { registerAnnotate } from './commands/annotate.js';
import { registerData } from './commands/data.js';
import { registerEval } from './commands/eval.js';
import { registerExperiment } from './commands/experiment.js';
import { registerModel } from './commands/model.js';
import { registerDeploy } from './commands/deploy.js';
import { registerImage } from './commands/image.js';
import { registerPlacement } from './commands/placement.js';
import { registerPlan } from './commands/plan.js';
import { registerS3Server, registerWorker } from './commands/worker.js';
import { registerEpisodesCommand } from './commands/episodes.js';
import { registerReportCommand } from './commands/report.js';
import { registerReplayCommand } from './commands/replay.js';
import { registerStack } from './commands/stack.js';
import { CliError } from './common.js';

const { version } = createRequire(import.meta.url)('../package.json') as { version: string };

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export function buildProgram(): Command {
  const program = new Command('ecgfaas')
    .description('Serverless ECG classification on self-hosted VMs, timed per invocation to compare hypervisors.')
    .version(version)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  registerEval(program);
  registerAnnotate(program);
  registerModel(program);
  registerData(program);
  registerStack(program);
  registerReplayCommand(program);
  registerReportCommand(program);
  registerEpisodesCommand(program);
  registerWorker(program);
  registerS3Server(program);
  registerPlan(program);
  registerPlacement(program);
  registerDeploy(program);
  registerImage(program);
  registerExperiment(program);
  // Subcommands inherit exitOverride only when set before they are added; set it on all of them.
  for (const command of program.commands) {
    command.exitOverride();
    for (const sub of command.commands) sub.exitOverride();
  }
  return program;
}

export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv]);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; commander has already printed its message.
      return error.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    if (error instanceof CliError) {
      process.stderr.write(`ecgfaas: error [${error.code}]: ${error.message}\n`);
      return error.exitCode;
    }
    if (isEcgFaasError(error)) {
      process.stderr.write(`ecgfaas: error [${error.code}]: ${error.message}\n`);
      return EXIT_FAILURE;
    }
    process.stderr.write(`ecgfaas: unexpected error: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
    return EXIT_FAILURE;
  }
}
