/** `packrat-agent inspect FILE`: the index entry the agent would publish for a package file. */
import path from "node:path";
import { PackratError } from "../../errors.js";
import { layoutForFilename } from "../../layout/index.js";
import { inspectableKinds } from "../generated-text.js";
import { openFileSource } from "../../sync/disk.js";
import { parseCommandArgs } from "./common.js";

export async function inspectCommand(argv: string[]): Promise<number> {
  const { positionals } = parseCommandArgs("inspect", argv, {}, true);
  const [file, ...extra] = positionals;
  if (file === undefined || extra.length > 0) {
    throw new PackratError("PACKRAT_USAGE", "inspect takes exactly one FILE", {
      hint: "packrat-agent inspect foo_1.0_all.deb",
    });
  }
  const layout = layoutForFilename(path.basename(file));
  if (!layout) {
    throw new PackratError(
      "PACKRAT_USAGE",
      `inspect: ${file}: not a package type this agent reads`,
      {
        hint: `expected one of: ${inspectableKinds()}`,
      },
    );
  }
  let source;
  try {
    source = await openFileSource(file);
  } catch (err) {
    throw new PackratError(
      "PACKRAT_USAGE",
      `inspect: cannot read ${file}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  try {
    const meta = await layout.parse(source, path.basename(file));
    process.stdout.write(`${layout.describe(meta, path.basename(file)).trimEnd()}\n`);
    return 0;
  } finally {
    await source.close();
  }
}
