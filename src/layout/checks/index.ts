/**
 * The client-view checker for each manager type. The publisher runs it on every new
 * generation before switching it in; `packrat-agent verify` runs it on the published tree.
 */
import { checkAptRepo } from "./apt.js";
import { checkJsonRepo } from "./json.js";
import { checkPacmanRepo } from "./pacman.js";
import { checkPypiRepo } from "./pypi.js";
import type { RepoChecker } from "./types.js";
import { checkYumRepos } from "./yum.js";

export type {
  CheckInput,
  CheckProblem,
  CheckResult,
  PackageInfo,
  RepoChecker,
  SignatureVerifier,
  TreeReader,
} from "./types.js";

const CHECKERS: Readonly<Record<string, RepoChecker>> = {
  apt: checkAptRepo,
  yum: checkYumRepos,
  pacman: checkPacmanRepo,
  pypi: checkPypiRepo,
  json: checkJsonRepo,
};

/** The checker for a manager type, or undefined when none exists (nothing to check). */
export function checkerFor(managerType: string): RepoChecker | undefined {
  return CHECKERS[managerType];
}
