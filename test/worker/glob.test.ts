// Sync patterns are globs, never regular expressions.
import { compileGlob } from '@drover/worker';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

function check(pattern: string | undefined, yes: string[], no: string[]) {
  const match = compileGlob(pattern);
  for (const p of yes) assert.equal(match(p), true, `${String(pattern)} should match ${p}`);
  for (const p of no) assert.equal(match(p), false, `${String(pattern)} should not match ${p}`);
}

describe('sync pattern globs', () => {
  it('"*.bin" compiles without throwing and selects .bin files in any folder', () => {
    assert.doesNotThrow(() => compileGlob('*.bin'));
    check('*.bin', ['model.bin', 'a/b/model.bin', '.bin'], ['model.bin.tmp', 'model.pt', 'abin', 'bin/model.pt']);
  });

  it('"checkpoint-*" selects checkpoint folders and everything inside them', () => {
    check(
      'checkpoint-*',
      ['checkpoint-500', 'checkpoint-500/model.safetensors', 'runs/checkpoint-1/optimizer/state.pt', 'checkpoint-'],
      ['checkpoint/model.pt', 'mycheckpoint-5', 'runs/final/model.pt', 'xcheckpoint-1/a'],
    );
  });

  it('regular-expression characters in a pattern are literal', () => {
    check('a.b', ['a.b', 'x/a.b'], ['aXb']);
    check('(x)+', ['(x)+'], ['x', 'xx']);
    check('file$', ['file$'], ['file']);
  });

  it('"**/*.pt" selects .pt files at any depth, including the top', () => {
    check('**/*.pt', ['a.pt', 'x/a.pt', 'x/y/z/a.pt'], ['a.pth', 'x/a.bin']);
  });

  it('a pattern with a slash is anchored at the top', () => {
    check('data/*.pt', ['data/a.pt', 'data/a.pt/inner'], ['x/data/a.pt', 'a.pt', 'data/sub/a.pt']);
    check('/data/*.pt', ['data/a.pt'], ['x/data/a.pt']);
  });

  it('a trailing slash does not anchor a pattern', () => {
    check('checkpoint-*/', ['runs/checkpoint-1/a.pt', 'checkpoint-2/b'], ['runs/a.pt']);
  });

  it('"?" matches exactly one character, and never a slash', () => {
    check('step-?.pt', ['step-1.pt', 'x/step-a.pt'], ['step-10.pt', 'step-.pt']);
    check('a?b', ['axb'], ['a/b']);
  });

  it('"*" never crosses a slash', () => {
    check('runs/*.pt', ['runs/a.pt'], ['runs/x/y/a.pt']);
  });

  it('character classes select the listed characters only', () => {
    check('shard-[0-3].bin', ['shard-0.bin', 'shard-3.bin', 'd/shard-2.bin'], ['shard-4.bin', 'shard-x.bin']);
    check('[!a]*.txt', ['b.txt'], ['a.txt']);
  });

  it('brace alternatives select each listed name', () => {
    check('*.{pt,bin}', ['a.pt', 'b/a.bin'], ['a.txt']);
  });

  it('an absent or empty pattern selects every file', () => {
    check(undefined, ['a', 'x/y/z.bin', '.hidden'], []);
    check('', ['a', 'x/y/z.bin'], []);
    const nullMatch = compileGlob(null);
    assert.equal(nullMatch('anything/at/all'), true);
  });

  it('dot files are matched like any other file', () => {
    check('*', ['.env', 'x/.cache'], []);
    check('*.bin', ['.hidden.bin'], []);
  });

  it('a leading ! or # is part of the name, not a negation or a comment', () => {
    check('!important', ['!important', 'x/!important'], ['other']);
    check('#notes', ['#notes'], ['other']);
  });

  it('malformed patterns still compile', () => {
    for (const p of ['[', 'a[', '*(', '+', '\\', '{a,']) assert.doesNotThrow(() => compileGlob(p)('x'), p);
  });
});
