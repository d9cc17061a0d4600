// `abota-agent doctor`: load the config and check it against the machine, area by area, without
// changing anything. Every problem comes with its fix; `ok` is false when any is an error.
import { type BuildInfo, buildInfo } from '../build-info.js';
import { type AgentConfig, loadAgentConfig } from '../config.js';
import { checkBootControl } from './boot-control.js';
import { checkDevice } from './device.js';
import { codeOf, type DoctorCheck, type DoctorCode, type DoctorReport, problem } from './finding.js';
import { checkSlots } from './slots.js';
import { checkTrust } from './trust.js';

export interface DoctorOptions {
  configPath: string;
  env: Record<string, string | undefined>;
  now?: Date;
  build?: BuildInfo;
}

function report(configPath: string, checks: DoctorCheck[]): DoctorReport {
  const findings = checks.flatMap((c) => c.findings);
  findings.sort((a, b) => Number(a.severity === 'warning') - Number(b.severity === 'warning'));
  return { ok: findings.every((f) => f.severity !== 'error'), configPath, checks, findings };
}

export async function runDoctor(o: DoctorOptions): Promise<DoctorReport> {
  let config: AgentConfig;
  try {
    config = await loadAgentConfig(o.configPath, o.env);
  } catch (e) {
    const code = (codeOf(e) ?? 'ERR_CONFIG_INVALID') as DoctorCode;
    const fix =
      code === 'ERR_CONFIG_READ'
        ? `write the agent config at ${o.configPath} (packages/client/README.md "Configuration"; the package installs /etc/abota/agent.json.example), or pass --config`
        : 'correct the field named in the message (unknown keys are errors, so a typo cannot become a default)';
    return report(o.configPath, [
      { name: 'config', findings: [problem(code, 'config', (e as Error).message, fix)] },
    ]);
  }
  const now = o.now ?? new Date();
  const boot = await checkBootControl(config);
  return report(o.configPath, [
    { name: 'config', findings: [] },
    { name: 'boot control', findings: boot.findings },
    { name: 'slots', findings: await checkSlots(config, boot.bootedSlot) },
    { name: 'trust root and clock', findings: await checkTrust(config, now, o.build ?? buildInfo()) },
    { name: 'data directory, device key, server', findings: await checkDevice(config) },
  ]);
}

/** Text for people: one line per area, then each finding with its fix. */
export function formatDoctorReport(r: DoctorReport): string {
  const lines = [`abota-agent doctor: ${r.configPath}`];
  for (const c of r.checks) {
    const errors = c.findings.filter((f) => f.severity === 'error').length;
    const mark = errors > 0 ? 'FAIL' : c.findings.length > 0 ? 'WARN' : 'ok';
    lines.push(`  ${mark.padEnd(4)}  ${c.name}`);
    for (const f of c.findings) {
      lines.push(`        ${f.severity} ${f.code} (${f.subject}): ${f.message}`, `          fix: ${f.fix}`);
    }
  }
  const errors = r.findings.filter((f) => f.severity === 'error').length;
  const warnings = r.findings.length - errors;
  lines.push(
    errors === 0
      ? `no problems found${warnings > 0 ? ` (${warnings} warning${warnings > 1 ? 's' : ''})` : ''}`
      : `${errors} problem${errors > 1 ? 's' : ''}${warnings > 0 ? `, ${warnings} warning${warnings > 1 ? 's' : ''}` : ''}: fix them and run "abota-agent doctor" again`,
  );
  return `${lines.join('\n')}\n`;
}
