import type { Command } from 'commander';

export function storageCommands(): Command[] {
  return [];
}
