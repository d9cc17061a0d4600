// Validation issues as a person reads them: "field.path: what was wrong" (docs/style.md "Errors a
// person can act on"). Every schema of the agent is a valibot schema (README "Memory": zod
// cost the agent 6.5 MiB of RSS under its unit flags, valibot about 1.3).
import * as v from 'valibot';

export type Issues = readonly v.BaseIssue<unknown>[];

/**
 * "slots.A.rootfs.path: Invalid type: Expected string but received undefined"; a key a strict
 * object does not know is "rebootComand: Unrecognized key" (a typo must not pass unnoticed).
 */
export function describeIssue(issue: v.BaseIssue<unknown>, rootLabel = '(root)'): string {
  const message =
    issue.type === 'strict_object' && issue.expected === 'never' ? 'Unrecognized key' : issue.message;
  return `${v.getDotPath(issue) ?? rootLabel}: ${message}`;
}

/** Every issue, "; "-separated. */
export function describeIssues(issues: Issues, rootLabel = '(root)'): string {
  return issues.map((issue) => describeIssue(issue, rootLabel)).join('; ');
}
