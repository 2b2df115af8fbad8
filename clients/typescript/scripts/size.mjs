// The size of the built client as an application ships it: dist/index.js bundled and
// minified by esbuild, then gzipped (level 9). Prints bytes and KiB.
//   npm run size
import { build } from "esbuild";
import { gzipSync } from "node:zlib";

const result = await build({
  entryPoints: ["dist/index.js"],
  bundle: true,
  minify: true,
  format: "esm",
  write: false,
});
const minified = result.outputFiles[0].contents;
const gzipped = gzipSync(minified, { level: 9 });
console.log(`minified: ${minified.length} B; minified+gzipped: ${gzipped.length} B (${(gzipped.length / 1024).toFixed(2)} KiB)`);
