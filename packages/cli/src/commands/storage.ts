// The storage commands: `drover upload`, `drover download`, `drover storage ls`, `drover storage rm`
// (the seeds' 1_upload_job_input, 8_download_job_output, 0_cloud_storage_check and
// 0_cloud_storage_remove), on S3-compatible storage or a local storage folder.
import { Command } from 'commander';
import { lsCommand } from './storage/ls.js';
import { rmCommand } from './storage/rm.js';
import { downloadCommand, uploadCommand } from './storage/transfer.js';

export function storageCommands(): Command[] {
  const storage = new Command('storage')
    .description('Look at and clean up object storage: ls (a tree with sizes), rm.')
    .addCommand(lsCommand())
    .addCommand(rmCommand());
  return [uploadCommand(), downloadCommand(), storage];
}
