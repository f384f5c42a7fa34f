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

/** The IPv4 address carried inside an IPv6 one (mapped, compatible, NAT64 64:ff9b::/96, 6to4 2002::/16). */
function embeddedIPv4(address: string): string | undefined {
  const mapped = /^::(?:ffff:)?(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1];
  const groups = expandIPv6(address);
  if (!groups) return undefined;
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  const zeros = (from: number, to: number) => groups.slice(from, to).every((g) => g === 0);
  // ::a.b.c.d (IPv4-compatible) and ::ffff:a.b.c.d (mapped), as the URL parser writes them: ::7f00:1
  if (zeros(0, 5) && (groups[5] === 0 || groups[5] === 0xffff) && (groups[6] !== 0 || groups[7]! > 1)) {
    return v4(groups[6]!, groups[7]!);
  }
  if (groups[0] === 0x64 && groups[1] === 0xff9b && zeros(2, 6)) return v4(groups[6]!, groups[7]!);
  if (groups[0] === 0x2002) return v4(groups[1]!, groups[2]!);
  return undefined;
}

function expandIPv6(address: string): number[] | undefined {
  const [head = '', tail] = address.split('::');
  const part = (s: string) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  if (/\./.test(address)) return undefined;
  const h = part(head);
  const t = tail === undefined ? [] : part(tail);
  const fill = 8 - h.length - t.length;
  if (fill < 0 || (tail === undefined && fill !== 0)) return undefined;
  const groups = [...h, ...new Array<number>(fill).fill(0), ...t];
  return groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined;
}

export function isInternalAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  if (family === 6) {
    const v4 = embeddedIPv4(address);
    if (v4 !== undefined && internal.check(v4, 'ipv4')) return true;
    return internal.check(address, 'ipv6');
  }
  return internal.check(address, 'ipv4');
}

/** The host as the resolver sees it: without IPv6 brackets, lower case, without the root label's dot. */
function hostOf(url: URL): string {
  return url.hostname
    .replace(/^\[(.*)\]$/, '$1')
    .toLowerCase()
    .replace(/\.+$/, '');
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
