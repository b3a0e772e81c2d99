// The builders live with the demo that ships them (src/demo/packages/python.ts).
export * from "../../src/demo/packages/python.js";
