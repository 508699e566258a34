/** `ecgfaas plan`: what placement would do on a what-if inventory (dry run; touches nothing). */
import { cpus, totalmem } from 'node:os';
import { Command } from 'commander';
import { explain, loadPolicy, plan, whatIfInventory, type Plan } from '../../scheduler/index.js';
import { integerOption, numberOption, printJson } from '../common.js';

interface PlanFlags {
  policy: string;
  vms: number;
  monitors: number;
  vcpus: number;
  memoryMb: number;
  costMs?: number;
  hostCpus: number;
  explain?: boolean;
  json?: boolean;
}

export function registerPlan(program: Command): void {
  program
    .command('plan')
    .description('Show what placement would do for M new monitors on N equal local VMs under a policy (dry run)')
    .requiredOption('--policy <file>', 'placement policy (YAML; see docs/SCHEDULER.md)')
    .requiredOption('--vms <n>', 'VMs in the what-if inventory, one warm worker each', integerOption('--vms', 0, 100_000))
    .requiredOption('--monitors <m>', 'new monitors to place', integerOption('--monitors', 0, 1_000_000))
    .option('--vcpus <n>', 'vCPUs of each VM', numberOption('--vcpus', 0.01, 256), 1)
    .option('--memory-mb <n>', 'memory of each VM', integerOption('--memory-mb', 64), 1024)
    .option('--host-cpus <n>', 'CPU threads of the host (default: this machine\'s)', integerOption('--host-cpus', 1), cpus().length)
    .option('--cost-ms <ms>', "each function's CPU per packet (default: the policy's defaultCostMsPerPacket)", numberOption('--cost-ms', 0.001, 1000))
    .option('--explain', 'print why each monitor went where it did, and what excluded the other workers')
    .option('--json', 'print one JSON object {placements, refused, scaleOut}')
    .action(async (flags: PlanFlags) => {
      const policy = await loadPolicy(flags.policy);
      const inventory = whatIfInventory({
        vms: flags.vms, vcpus: flags.vcpus, memoryMb: flags.memoryMb, hostCpus: flags.hostCpus, hostMemoryMb: Math.round(totalmem() / 2 ** 20),
      });
      const width = String(flags.monitors).length;
      const monitors = Array.from({ length: flags.monitors }, (_, index) => ({
        monitor: `m-${String(index + 1).padStart(width, '0')}`, ...(flags.costMs !== undefined ? { costMsPerPacket: flags.costMs } : {}),
      }));
      const result = plan(inventory, policy, monitors);
      if (flags.json) {
        printJson({
          placements: result.placements, refused: result.refused, scaleOut: result.scaleOut, resume: result.resume,
          ...(flags.explain ? { decisions: result.decisions } : {}),
        });
        return;
      }
      process.stdout.write(`${formatPlan(result)}\n`);
      if (flags.explain) process.stdout.write(`\n${result.decisions.map(explain).join('\n')}\n`);
    });
}

function formatPlan(result: Plan): string {
  const byVm = new Map<string, string[]>();
  for (const vm of result.inventory.vms) byVm.set(vm.name, []);
  for (const placement of result.placements) byVm.get(placement.vm)?.push(placement.monitor);
  const scaled = new Set(result.scaleOut.map((entry) => entry.vm));
  const lines = ['VM          new  monitors'];
  for (const [vm, monitors] of byVm) {
    lines.push(`${vm.padEnd(11)} ${scaled.has(vm) ? 'yes' : '   '}  ${monitors.length === 0 ? '-' : monitors.join(', ')}`);
  }
  lines.push(`placed ${result.placements.length}, refused ${result.refused.length}, new VMs ${result.scaleOut.length}`);
  for (const refusal of result.refused) lines.push(`refused ${refusal.monitor}: ${refusal.reason}`);
  return lines.join('\n');
}
