// Webhook targets on loopback, private, link-local (cloud metadata) or otherwise internal
// addresses are refused unless the server allows them (--allow-private-webhooks), both when
// a job is submitted (literal addresses) and when a delivery resolves the host name.
import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

const internal = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) internal.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const) internal.addSubnet(net, prefix, 'ipv6');

export function isInternalAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  if (family === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return internal.check(mapped[1]!, 'ipv4');
    return internal.check(address, 'ipv6');
  }
  return internal.check(address, 'ipv4');
}

function hostOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
}

/** Submit-time check; returns why the URL is refused, or undefined. */
export function refuseWebhookUrl(raw: string, allowPrivate: boolean): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'is not a valid URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must be an http(s) URL';
  if (url.username || url.password) return 'must not carry credentials';
  if (allowPrivate) return undefined;
  const host = hostOf(url);
  if (host === 'localhost' || host.endsWith('.localhost') || isInternalAddress(host)) {
    return 'points at a loopback or private address (start the server with --allow-private-webhooks to allow it)';
  }
  return undefined;
}

/** Delivery-time check: every address the host resolves to must be public. */
export async function refuseResolvedWebhookHost(raw: string, allowPrivate: boolean): Promise<string | undefined> {
  const early = refuseWebhookUrl(raw, allowPrivate);
  if (early || allowPrivate) return early;
  const host = hostOf(new URL(raw));
  if (isIP(host)) return undefined;
  const addresses = await lookup(host, { all: true });
  const bad = addresses.find((a) => isInternalAddress(a.address));
  return bad ? `resolves to internal address ${bad.address}` : undefined;
}
