import type { Command } from 'commander';

export function clusterCommands(): Command[] {
  return [];
}
