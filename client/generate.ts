// npm run client:generate: writes client/openapi.generated.ts from the document the gateway serves.
import { writeFile } from "node:fs/promises";
import { generatedTypesPath, servedDocument, typesOf } from "./generate-types.ts";

await writeFile(generatedTypesPath, await typesOf(await servedDocument()));
console.log(`wrote ${generatedTypesPath}`);
