// Typed GraphQL operations, generated from the server's SDL (../graph/*.graphqls) by the client
// preset. Runs offline (`npm run codegen`, hooked into `make generate`); the output in src/gql is
// committed and diff-checked in CI like the Go generated code.
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: "../graph/*.graphqls",
  documents: ["src/**/*.{ts,tsx}", "!src/gql/**"],
  ignoreNoDocuments: true,
  generates: {
    "src/gql/": {
      preset: "client",
      presetConfig: { fragmentMasking: false },
      config: {
        useTypeImports: true,
        enumsAsTypes: true,
        scalars: { Time: "string", Cursor: "string", Map: "Record<string, unknown>", Any: "unknown" },
        // Only what the operations use is emitted, so the bundle does not carry the whole schema.
        onlyOperationTypes: true,
      },
    },
  },
};
export default config;
