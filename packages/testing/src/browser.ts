// Headless Chromium for the dashboard's tests and benchmark: Debian's /usr/bin/chromium driven by
// playwright-core (no browser download). .ci/run installs the package when it is missing.
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = process.env.DROVER_CHROMIUM ?? '/usr/bin/chromium';

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set DROVER_CHROMIUM)`);
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
}
