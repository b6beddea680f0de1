// Drives the official Atoma TypeScript SDK, unmodified: node drive.js URL MODEL create|stream
// Prints one JSON line: {"content": ..., "usage": ...} for create, {"chunks": [...]} for stream.
"use strict";
const { AtomaSDK } = require("atoma-sdk");

async function main() {
  const [serverURL, model, mode] = process.argv.slice(2);
  const sdk = new AtomaSDK({ bearerAuth: "not-checked", serverURL });
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
