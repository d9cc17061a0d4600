#!/usr/bin/env node
// `npm run check:layers` (part of `npm run lint`, so CI runs it): the layering rules of
// docs/architecture.md, checked on the sources.
//   1. A package (packages/*) never depends on or imports a service (services/*): not in its
//      package.json, not in any source file (src/, test/, bench/), not through a relative path
//      or a `new URL('…', import.meta.url)` that reaches into services/.
//   2. No import circle between the files of a workspace's src/ (static, type-only and dynamic
//      imports all count: a circle is a tangle to read even when it loads).
//   3. No circle between workspaces through their package.json dependencies (dev ones included).
// Imports are read with TypeScript's own pre-processor (ts.preProcessFile), not with regexes.
// Prints one line per finding and exits 1 when there is any; `--quiet` prints nothing on success;
// `--root DIR` checks another tree (test/runtime/check-layers.test.ts).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const rootArg = process.argv.indexOf('--root');
const root =
  rootArg > 0
    ? resolve(process.argv[rootArg + 1] ?? '.')
    : resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE = /\.(ts|mts|cts|tsx|js|mjs|cjs)$/;
const SKIP_DIRS = new Set(['node_modules', 'dist', '.turbo', '.vitest', 'coverage']);

/** The workspaces of the root package.json: name, directory, kind (package / service / other). */
function workspaces() {
  const globs = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).workspaces;
  const dirs = globs.flatMap((glob) => {
    if (!glob.endsWith('/*')) return [glob];
    const parent = glob.slice(0, -2);
    return readdirSync(join(root, parent)).map((name) => `${parent}/${name}`);
  });
  return dirs
    .filter((dir) => existsSync(join(root, dir, 'package.json')))
    .map((dir) => {
      const manifest = JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf8'));
      const kind = dir.startsWith('packages/')
        ? 'package'
        : dir.startsWith('services/')
          ? 'service'
          : 'other';
      return { name: manifest.name, dir, kind, manifest };
    });
}

/** Every source file below `dir` (absolute paths), skipping build output and dependencies. */
function sourceFiles(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (SKIP_DIRS.has(entry.name)) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(path));
    else if (SOURCE.test(entry.name) && !entry.name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

/** The specifiers a file imports: static, type-only, re-exports, require() and import(). */
function importsOf(file) {
  const text = readFileSync(file, 'utf8');
  const specifiers = ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName);
  // A module loaded by URL (a computed specifier the pre-processor cannot see).
  for (const m of text.matchAll(/new URL\(\s*['"`]([^'"`]+)['"`]\s*,\s*import\.meta\.url\s*\)/g)) {
    if (m[1].startsWith('.')) specifiers.push(m[1]);
  }
  return specifiers;
}

/** The file a relative specifier names (`./x.js` is written for `./x.ts`), or undefined. */
function resolveRelative(from, specifier) {
  const base = resolve(dirname(from), specifier);
  const candidates = [base, base.replace(/\.(m|c)?js$/, '.$1ts'), `${base}.ts`, join(base, 'index.ts')];
  return candidates.find((path) => existsSync(path) && statSync(path).isFile());
}

const findings = [];
const rel = (path) => relative(root, path).split(sep).join('/');
const all = workspaces();
const services = all.filter((w) => w.kind === 'service');
const isServiceName = (specifier) =>
  services.find((s) => specifier === s.name || specifier.startsWith(`${s.name}/`));
const isServicePath = (path) => services.find((s) => `${rel(path)}/`.startsWith(`${s.dir}/`));

// 1. packages never depend on or import services.
for (const w of all.filter((x) => x.kind === 'package')) {
  for (const field of ['dependencies', 'devDependencies', 'peerDependencies', 'optionalDependencies']) {
    for (const dep of Object.keys(w.manifest[field] ?? {})) {
      const service = isServiceName(dep);
      if (service) {
        findings.push(
          `${w.dir}/package.json: ${field} names ${dep} (a package must not depend on a service)`,
        );
      }
    }
  }
  for (const file of sourceFiles(join(root, w.dir))) {
    for (const specifier of importsOf(file)) {
      const byName = isServiceName(specifier);
      const byPath = specifier.startsWith('.') ? isServicePath(resolve(dirname(file), specifier)) : undefined;
      const service = byName ?? byPath;
      if (service) {
        findings.push(
          `${rel(file)}: imports '${specifier}' (${service.dir}: a package must not import a service)`,
        );
      }
    }
  }
}

// 2. no import circle inside a workspace's src/ (Tarjan's strongly connected components).
for (const w of all) {
  const src = join(root, w.dir, 'src');
  const files = sourceFiles(src);
  const edges = new Map();
  for (const file of files) {
    const targets = new Set();
    for (const specifier of importsOf(file)) {
      if (!specifier.startsWith('.')) continue;
      const target = resolveRelative(file, specifier);
      if (target?.startsWith(`${src}${sep}`)) targets.add(target);
    }
    edges.set(file, [...targets]);
  }
  for (const component of stronglyConnected(files, edges)) {
    findings.push(`${w.dir}/src: import circle ${describeCircle(component, edges)}`);
  }
}

// 3. no circle between workspaces through package.json dependencies.
{
  const byName = new Map(all.map((w) => [w.name, w]));
  const edges = new Map(
    all.map((w) => {
      const deps = ['dependencies', 'devDependencies', 'peerDependencies', 'optionalDependencies'].flatMap(
        (field) => Object.keys(w.manifest[field] ?? {}),
      );
      return [w.name, [...new Set(deps.filter((d) => byName.has(d)))]];
    }),
  );
  for (const component of stronglyConnected([...edges.keys()], edges)) {
    findings.push(`workspaces: dependency circle ${describeCircle(component, edges, (n) => n)}`);
  }
}

/** The circles of a graph: strongly connected components of more than one node, or a self-import. */
function stronglyConnected(nodes, edges) {
  let next = 0;
  const index = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const out = [];
  const visit = (v) => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v), index.get(w)));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (edges.get(v) ?? []).includes(v)) out.push(component);
    }
  };
  for (const v of nodes) if (!index.has(v)) visit(v);
  return out;
}

/** One concrete circle through a component, as `a → b → a` (files relative to the repository). */
function describeCircle(component, edges, name = rel) {
  const inside = new Set(component);
  const start = [...component].sort()[0];
  // Breadth-first from start back to start, staying inside the component: the shortest circle.
  const previous = new Map();
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift();
    for (const w of edges.get(v) ?? []) {
      if (!inside.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let at = v; at !== start; at = previous.get(at)) path.splice(1, 0, at);
        path.push(start);
        const more = component.length > path.length - 1 ? ` (${component.length} files tangled)` : '';
        return path.map(name).join(' → ') + more;
      }
      if (!previous.has(w)) {
        previous.set(w, v);
        queue.push(w);
      }
    }
  }
  return component.map(name).join(', ');
}

if (findings.length > 0) {
  for (const line of findings) console.error(line);
  console.error(
    `check-layers: ${findings.length} finding(s). Packages (packages/*) must not import services ` +
      '(services/*); a workspace src/ and the workspaces themselves must not import in a circle ' +
      '(docs/architecture.md "Layering").',
  );
  process.exit(1);
}
if (!process.argv.includes('--quiet')) {
  console.log(`check-layers: ${all.length} workspaces, no package imports a service, no import circle`);
}
