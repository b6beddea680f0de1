// Drives the official Atoma TypeScript SDK, unmodified:
//   node drive.js URL MODEL create|stream|embeddings|confidential_embeddings [KEY]
// Prints one JSON line: {"content": ..., "usage": ...} for create, {"chunks": [...]} for stream,
// {"embeddings": [...], "usage": ...} for the embeddings.
"use strict";
const { AtomaSDK } = require("atoma-sdk");

async function main() {
  const [serverURL, model, mode, key] = process.argv.slice(2);
  const sdk = new AtomaSDK({ bearerAuth: key || "not-checked", serverURL });
  if (mode === "embeddings" || mode === "confidential_embeddings") {
    const input = ["The cat sat on the mat.", "A kitten rested on the rug."];
    const group = mode === "embeddings" ? sdk.embeddings : sdk.confidentialEmbeddings;
    const result = await group.create({ model, input });
    console.log(JSON.stringify({ embeddings: result.data.map((item) => item.embedding), usage: result.usage }));
    return;
  }
  const request = {
    model,
    messages: [{ role: "user", content: "Say hello in five words." }],
    maxTokens: 12,
    temperature: 0,
  };
  if (mode === "create") {
    const completion = await sdk.confidentialChat.create(request);
    console.log(JSON.stringify({ content: completion.choices[0].message.content, usage: completion.usage }));
  } else {
    const stream = await sdk.confidentialChat.createStream(request);
    const chunks = [];
    for await (const event of stream) {
      chunks.push(event.data);
    }
    console.log(JSON.stringify({ chunks }));
  }
}

main().catch((error) => {
  console.error(String(error && error.stack ? error.stack : error));
  process.exit(1);
});
