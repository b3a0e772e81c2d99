/**
 * The client-view checkers' types. Each layout owns its checker (`RepoLayout.check`); the
 * publisher and `verify` reach it through the layout, never by format name.
 */
export type {
  CheckInput,
  CheckProblem,
  CheckResult,
  PackageInfo,
  RepoChecker,
  SignatureVerifier,
  TreeReader,
} from "./types.js";
