// `make web`: builds the page the server serves at /j/ into beach_cli/web/static/, where it is
// committed and shipped as package data (so neither `pip install` nor `make run` needs Node).
//   beach.js      web/src/main.js and what it imports, one minified ES2020 file, no source map
//   beach.css     web/src/page.css with xterm.js's stylesheet, minified
//   index.html    copied from web/index.html
//   LICENSES.txt  the licence of every package the bundle contains
//   SOURCES       SHA-256 of every input and output: tests/test_web_page.py recomputes it from
//                 the tree, so a stale bundle shows in a clone (where mtimes mean nothing)
// `node web/build.mjs DIR` writes them to DIR instead (the test that the build reproduces them).
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const web = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(web);
const out = path.resolve(process.argv[2] ?? path.join(root, 'beach_cli', 'web', 'static'));

// The inputs, as repository paths. node_modules is not one: the lockfile pins it.
const FIXED_INPUTS = ['web/build.mjs', 'web/index.html', 'web/package-lock.json', 'web/package.json'];

async function filesUnder(dir) {
  const found = [];
  for (const entry of await readdir(path.join(root, dir), { withFileTypes: true })) {
    const rel = `${dir}/${entry.name}`;
    if (entry.isDirectory()) found.push(...(await filesUnder(rel)));
    else if (entry.isFile()) found.push(rel);
  }
  return found;
}

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

// `<sha256>  <path>` lines (sha256sum's format), sorted by path, and one digest over them.
// tests/test_web_page.py computes the same thing in Python: change both or neither.
async function digestLines(paths, base) {
  const lines = [];
  for (const p of [...paths].sort()) lines.push(`${sha256(await readFile(path.join(base, p)))}  ${p}\n`);
  return lines;
}

const common = { bundle: true, minify: true, sourcemap: false, logLevel: 'warning', metafile: true };

const [js, css] = await Promise.all([
  build({
    ...common,
    entryPoints: [path.join(web, 'src', 'main.js')],
    outfile: path.join(out, 'beach.js'),
    format: 'iife', // a classic deferred script: it runs from file:// too, unlike a module
    platform: 'browser',
    target: 'es2020',
  }),
  build({
    ...common,
    entryPoints: [path.join(web, 'src', 'page.css')],
    outfile: path.join(out, 'beach.css'),
  }),
]);

await mkdir(out, { recursive: true });
await writeFile(path.join(out, 'index.html'), await readFile(path.join(web, 'index.html')));

// MIT and friends ask for their notice in every copy: one file beside the bundle.
const packages = new Set();
for (const input of [...Object.keys(js.metafile.inputs), ...Object.keys(css.metafile.inputs)]) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (m) packages.add(m[1]);
}
let licenses = 'Third-party code in beach.js and beach.css, with its licence.\n';
for (const name of [...packages].sort()) {
  const dir = path.join(web, 'node_modules', name);
  const { version } = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8'));
  const text = await readFile(path.join(dir, 'LICENSE'), 'utf8');
  licenses += `\n==== ${name} ${version} ====\n\n${text.trim()}\n`;
}
await writeFile(path.join(out, 'LICENSES.txt'), licenses);

const inputs = await digestLines([...FIXED_INPUTS, ...(await filesUnder('web/src'))], root);
const outputs = await digestLines(['LICENSES.txt', 'beach.css', 'beach.js', 'index.html'], out);
await writeFile(
  path.join(out, 'SOURCES'),
  '# Written by `make web` (web/build.mjs). The first line is the SHA-256 of the input lines:\n' +
    '# a test recomputes all of it from the tree and asks for `make web` when it differs.\n' +
    `sources ${sha256(inputs.join(''))}\n` +
    inputs.map((line) => `input ${line}`).join('') +
    outputs.map((line) => `output ${line}`).join(''),
);

// Sizes as they travel: the server sends the assets gzipped (the budget is 200 KB of it).
for (const name of ['beach.js', 'beach.css']) {
  const body = await readFile(path.join(out, name));
  console.log(`${path.join(out, name)}: ${body.length} bytes, ${gzipSync(body, { level: 9 }).length} gzipped`);
}
