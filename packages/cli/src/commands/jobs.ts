import type { Command } from 'commander';

export function jobCommands(): Command[] {
  return [];
}
