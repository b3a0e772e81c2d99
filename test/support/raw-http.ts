// Ships with the demo (src/demo/raw-http.ts).
export * from "../../src/demo/raw-http.js";
