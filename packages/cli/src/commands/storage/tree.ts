// A listing of objects as a tree, with each object's size and each folder's total size and file count:
//   s3://jobs/run-1/   1.10 MiB  3 files
//   ├── input/         1.00 MiB  2 files
//   │   ├── a.bin      1.00 MiB
//   │   └── b.txt          12 B
//   └── state.json        100 B
import { formatBytes, paint } from '../../lib/output.js';

export interface TreeNode {
  name: string;
  size: number;
  files: number;
  /** Present for folders. */
  children?: Map<string, TreeNode>;
}

function folder(name: string): TreeNode {
  return { name, size: 0, files: 0, children: new Map() };
}

/** Builds the tree of `/`-separated relative paths; a path ending in `/` (a folder marker) adds only folders. */
export function buildTree(entries: readonly { path: string; size: number }[]): TreeNode {
  const root = folder('');
  for (const e of entries) {
    const marker = e.path.endsWith('/');
    const parts = (marker ? e.path.slice(0, -1) : e.path).split('/');
    const leaf = marker ? undefined : parts.pop();
    let node = root;
    const chain = [root];
    for (const part of parts) {
      let next = node.children?.get(`d:${part}`);
      if (!next) {
        next = folder(part);
        node.children?.set(`d:${part}`, next);
      }
      node = next;
      chain.push(node);
    }
    if (leaf === undefined) continue;
    // Folders and objects are keyed apart: an object named like a folder is shown beside it.
    node.children?.set(`f:${leaf}`, { name: leaf, size: e.size, files: 1 });
    for (const n of chain) {
      n.size += e.size;
      n.files += 1;
    }
  }
  return root;
}

const files = (n: number) => `${n} file${n === 1 ? '' : 's'}`;

/** The tree as aligned text lines: name column, then size (right-aligned), then a folder's file count. */
export function renderTree(root: TreeNode, title: string): string {
  const rows: { left: string; width: number; size: string; note: string }[] = [];
  rows.push({ left: paint('bold', title), width: title.length, size: formatBytes(root.size), note: files(root.files) });
  const walk = (node: TreeNode, indent: string): void => {
    const kids = [...(node.children?.values() ?? [])].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.children ? -1 : 1));
    kids.forEach((kid, i) => {
      const last = i === kids.length - 1;
      const branch = `${indent}${last ? '└── ' : '├── '}`;
      const name = kid.children ? `${kid.name}/` : kid.name;
      rows.push({
        left: branch + (kid.children ? paint('blue', name) : name),
        width: branch.length + name.length,
        size: formatBytes(kid.size),
        note: kid.children ? files(kid.files) : '',
      });
      if (kid.children) walk(kid, indent + (last ? '    ' : '│   '));
    });
  };
  walk(root, '');
  const nameWidth = Math.max(...rows.map((r) => r.width));
  const sizeWidth = Math.max(...rows.map((r) => r.size.length));
  return rows
    .map((r) => `${r.left}${' '.repeat(nameWidth - r.width)}  ${r.size.padStart(sizeWidth)}${r.note ? `  ${r.note}` : ''}`)
    .join('\n') + '\n';
}
