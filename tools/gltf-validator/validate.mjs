// Validate one .glb/.gltf file with the Khronos glTF validator; print its JSON report.
// Usage: node validate.mjs FILE   (exit code 0 when the report has no errors, 1 otherwise)
import { readFile } from "node:fs/promises";
import path from "node:path";
import * as validator from "gltf-validator";

const file = process.argv[2];
if (!file) {
  console.error("usage: node validate.mjs FILE");
  process.exit(2);
}
const bytes = new Uint8Array(await readFile(file));
const report = await validator.validateBytes(bytes, {
  uri: path.basename(file),
  maxIssues: 0, // 0 = report every issue
  writeTimestamp: false,
  // External resources (a .gltf's .bin/.png) resolve next to the file.
  externalResourceFunction: (uri) =>
    readFile(path.join(path.dirname(file), decodeURIComponent(uri))).then((b) => new Uint8Array(b)),
});
console.log(JSON.stringify(report, null, 2));
process.exit(report.issues.numErrors > 0 ? 1 : 0);
