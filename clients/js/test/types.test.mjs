// index.d.ts against the package: the TypeScript compiler checks an app's
// use of the API (test/types/usage.ts) against the declarations, and every
// export, method and property the declarations promise exists in the
// JavaScript the package ships.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';
import * as client from '../index.js';
import * as replicaModule from '../replica.js';

const pkg = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

test('tsc --noEmit accepts an app using the API as index.d.ts declares it', async () => {
  const tsc = path.join(pkg, 'node_modules', 'typescript', 'bin', 'tsc');
  try {
    await promisify(execFile)(process.execPath, [tsc, '--noEmit', '-p', path.join(pkg, 'test', 'types')], { cwd: pkg });
  } catch (err) {
    assert.fail(`tsc rejected test/types/usage.ts against index.d.ts:\n${err.stdout}${err.stderr}`);
  }
});

test('every export, method and property index.d.ts declares exists in the package', async () => {
  const src = ts.createSourceFile('index.d.ts', await readFile(path.join(pkg, 'index.d.ts'), 'utf8'), ts.ScriptTarget.ES2022);
  const modules = { '.': client, './replica': replicaModule };
  let checked = 0;
  for (const stmt of src.statements) {
    const exported = stmt.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
    if (!exported || !(ts.isClassDeclaration(stmt) || ts.isFunctionDeclaration(stmt))) continue;
    const name = stmt.name.text;
    for (const [entry, mod] of Object.entries(modules)) {
      // package.json maps both entries to index.d.ts; replica.js exports
      // the replica half of it.
      if (entry === './replica' && name === 'ChangecastClient') continue;
      assert.equal(typeof mod[name], 'function', `${entry} does not export ${name}, which index.d.ts declares`);
    }
    if (!ts.isClassDeclaration(stmt)) continue;
    // An instance made without running the constructor's checks: the
    // declared members are methods of the prototype, getters, or fields
    // the constructor sets.
    const Cls = client[name];
    const instance = name === 'ChangecastClient' ? new Cls({ url: 'http://x/api', hub: 'h' }) : new Cls();
    for (const m of stmt.members) {
      if (ts.isConstructorDeclaration(m)) continue;
      const member = m.name.text;
      assert.ok(member in instance, `${name}.${member} is declared in index.d.ts but missing from the package`);
      if (ts.isMethodDeclaration(m)) assert.equal(typeof instance[member], 'function', `${name}.${member} is declared a method`);
      checked++;
    }
  }
  assert.ok(checked >= 30, `checked only ${checked} declared members`);
});
