// Ships with the demo (src/demo/static-server.ts).
export * from "../../src/demo/static-server.js";
