// Drives the four completion calls of a built checkout of the official Atoma TypeScript SDK, unmodified:
//   node drive_source.mjs SDK_DIR URL MODEL completions|completions_stream|confidential|confidential_stream
// The confidential calls take an encrypted envelope (the SDK's ConfidentialComputeRequest), so this script
// builds it with the SDK's own encryptMessage and opens the answers with its decryptMessage.
// Prints one JSON line: {"text": ..., "usage": ...} or {"texts": [...]} for the streams.
import path from "node:path";
import { pathToFileURL } from "node:url";

const [sdkDir, serverURL, model, mode] = process.argv.slice(2);
const load = (file) => import(pathToFileURL(path.join(sdkDir, "dist", "esm", file)).href);
const { AtomaSDK } = await load("index.js");
const crypto = await load("lib/crypto_utils.js");
const sdk = new AtomaSDK({ bearerAuth: "not-checked", serverURL });
const prompt = "The capital of France is";

async function envelope(stream) {
  const keys = crypto.generateKeyPair();
  const body = { model, prompt, max_tokens: 8, temperature: 0, stream };
  const [nodeKey, salt, sealed] = await crypto.encryptMessage(sdk, keys.privateKey, body, model);
  const request = {
    ciphertext: sealed.ciphertext,
    clientDhPublicKey: sealed.client_dh_public_key,
    modelName: sealed.model_name,
    nodeDhPublicKey: sealed.node_dh_public_key,
    nonce: sealed.nonce,
    plaintextBodyHash: sealed.plaintext_body_hash,
    salt: sealed.salt,
    stackSmallId: sealed.stack_small_id,
    stream: sealed.stream,
  };
  const open = (answer) => {
    const plain = crypto.decryptMessage(
      Buffer.from(answer.ciphertext, "base64"), keys.privateKey, nodeKey, salt, Buffer.from(answer.nonce, "base64"));
    if (!plain) throw new Error("could not decrypt an answer");
    return JSON.parse(new TextDecoder().decode(plain));
  };
  return { request, open };
}

async function main() {
  if (mode === "completions") {
    const result = await sdk.completions.create({ model, prompt, maxTokens: 8, temperature: 0 });
    console.log(JSON.stringify({ text: result.choices[0].text, usage: result.usage }));
  } else if (mode === "completions_stream") {
    const stream = await sdk.completions.createStream({ model, prompt, maxTokens: 8, temperature: 0 });
    const texts = [];
    for await (const event of stream) texts.push(...event.data.choices.map((choice) => choice.text));
    console.log(JSON.stringify({ texts }));
  } else if (mode === "confidential") {
    const { request, open } = await envelope(false);
    const answer = await sdk.confidentialCompletions.create(request);
    const completion = open(answer);
    console.log(JSON.stringify({ text: completion.choices[0].text, usage: completion.usage }));
  } else if (mode === "confidential_stream") {
    const { request, open } = await envelope(true);
    const stream = await sdk.confidentialCompletions.createStream(request);
    const texts = [];
    for await (const event of stream) {
      const chunk = open(event.data.data ?? event.data);
      texts.push(...(chunk.choices ?? []).map((choice) => choice.text));
    }
    console.log(JSON.stringify({ texts }));
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
}

main().catch((error) => {
  console.error(String(error && error.stack ? error.stack : error));
  process.exit(1);
});
