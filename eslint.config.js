// @ts-check
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import n from "eslint-plugin-n";
import prettier from "eslint-config-prettier";

export default tseslint.config(
  {
    ignores: [
      "dist/**",
      "node_modules/**",
      "coverage/**",
      "bench/results/**",
      "test/fixtures/generated/**",
      "eslint.config.js",
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { n },
    rules: {
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_" },
      ],
      // A daemon must never lose a promise: an unhandled rejection is a crash.
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
    },
  },
  // Only src/agent/ touches the process (argv, signals, exit codes).
  {
    files: ["src/**/*.ts"],
    ignores: ["src/agent/**"],
    rules: {
      "n/no-process-exit": "error",
      "no-restricted-globals": [
        "error",
        {
          name: "process",
          message: "Only src/agent/ touches process; take what you need as a parameter.",
        },
      ],
    },
  },
  // The product ships no test code: nothing under src/ imports test/ (the layout and sync
  // blocks below repeat the pattern: a later no-restricted-imports replaces an earlier one).
  {
    files: ["src/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["**/test/**", "../../test/*", "../../../test/*"],
              message: "src/ ships; test/ does not. Move what both need into src/ (src/demo/).",
            },
          ],
        },
      ],
    },
  },
  // Layouts are pure renderers: no disk, no network, no sync.
  {
    files: ["src/layout/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: [
                "node:fs",
                "node:fs/*",
                "fs",
                "fs/*",
                "node:net",
                "node:http",
                "node:https",
                "undici",
                "**/sync/**",
                "**/agent/**",
                "**/state/**",
              ],
              message: "Layouts are pure: package records in, files out.",
            },
            {
              group: ["**/test/**"],
              message: "src/ ships; test/ does not.",
            },
          ],
        },
      ],
    },
  },
  // Sync never knows a format's details, and never reaches up into agent/.
  {
    files: ["src/sync/**/*.ts", "src/publish/**/*.ts", "src/state/**/*.ts", "src/signing/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["**/agent/**"],
              message: "Imports flow agent → sync → {layout, signing, state}.",
            },
            {
              group: ["**/test/**"],
              message: "src/ ships; test/ does not.",
            },
            {
              // An allow-list: a new format needs no entry here to stay out of sync.
              group: ["**/layout/**", "!**/layout/index.js", "!**/layout/types.js"],
              message:
                "sync must not know a format: import only layout/index.js and layout/types.js (the RepoLayout port).",
            },
          ],
        },
      ],
    },
  },
  // The planners are pure functions of their input (issue 25): unit-tested with plain objects.
  {
    files: ["src/sync/plan.ts", "src/sync/reconcile.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: [
                "node:fs",
                "node:fs/*",
                "node:net",
                "node:http",
                "node:https",
                "node:child_process",
                "undici",
                "**/agent/**",
                "**/test/**",
                "**/state/db.js",
                "**/signing/**",
                "./download.js",
                "./master-client.js",
              ],
              message: "The planners are pure: no disk, network, state DB or signing.",
            },
            {
              group: ["**/layout/**", "!**/layout/index.js", "!**/layout/types.js"],
              message:
                "sync must not know a format: import only layout/index.js and layout/types.js (the RepoLayout port).",
            },
          ],
        },
      ],
    },
  },
  {
    files: ["test/**/*.ts", "bench/**/*.ts"],
    rules: {
      "@typescript-eslint/no-unsafe-assignment": "off",
      "@typescript-eslint/no-unsafe-member-access": "off",
      "@typescript-eslint/no-non-null-assertion": "off",
    },
  },
  prettier,
);
