#!/usr/bin/env node
// Committed (not built) so npm can link it on install, before `prepare` builds dist/.
import { main } from '../dist/index.js';

main(process.argv).catch((err) => {
  process.stderr.write(`drover: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
