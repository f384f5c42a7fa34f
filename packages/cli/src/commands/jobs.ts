// Client commands for jobs and accounts: submit, status, jobs list|get|cancel|purge|events|clear, logs,
// users create|me, tokens create. All HTTP goes through the SDK's DroverClient.
import type { Command } from 'commander';
import { tokensCommand, usersCommand } from './jobs/admin.js';
import { usageErrors } from './jobs/common.js';
import { logsCommand } from './jobs/logs.js';
import { jobsCommand } from './jobs/manage.js';
import { statusCommand } from './jobs/status.js';
import { submitCommand } from './jobs/submit.js';

export function jobCommands(): Command[] {
  return [submitCommand(), statusCommand(), jobsCommand(), logsCommand(), usersCommand(), tokensCommand()].map((c) => usageErrors(c));
}
