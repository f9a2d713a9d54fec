// Validate glTF/GLB files with the Khronos glTF validator; prints one JSON report per file
// (an array) on stdout. Usage: node tests/js/validate_gltf.mjs FILE...
import { readFile } from "node:fs/promises";
import validator from "gltf-validator";

const reports = [];
for (const path of process.argv.slice(2)) {
  const data = new Uint8Array(await readFile(path));
  const report = await validator.validateBytes(data, { uri: path, maxIssues: 200 });
  reports.push({ path, issues: report.issues, info: report.info });
}
process.stdout.write(JSON.stringify(reports));
