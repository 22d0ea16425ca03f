// LiveAvatar's web SDK (@heygen/liveavatar-web-sdk, pinned in the Makefile): its SessionAPIClient
// runs start, keep-alive and stop with the session token, unchanged except for its API URL (the
// SDK does not export the class, so its module is loaded from the package with API_URL bound to
// the server under test). Prints one JSON line of what it saw; exits 1 naming the failed call.
//
//   node liveavatar_session_api.mjs SDK_DIR API_URL SESSION_TOKEN
import { readFile } from "node:fs/promises";
import path from "node:path";

const [sdkDir, apiUrl, token] = process.argv.slice(2);
const file = path.join(sdkDir, "lib", "LiveAvatarSession", "SessionApiClient.js");
const source = (await readFile(file, "utf8")).replace(
  'import { API_URL } from "../const";',
  `const API_URL = ${JSON.stringify(apiUrl)};`,
);
if (source.includes("../const")) {
  console.log(JSON.stringify({ failed: "load", error: "the SDK's module changed shape" }));
  process.exit(1);
}
const { SessionAPIClient } = await import(
  "data:text/javascript;base64," + Buffer.from(source).toString("base64")
);

const client = new SessionAPIClient(token, apiUrl);
const seen = {};
let step = "startSession";
try {
  const started = await client.startSession();
  seen.session_id = started.session_id;
  seen.livekit_url = Boolean(started.livekit_url);
  step = "keepAlive";
  await client.keepAlive();
  seen.kept_alive = true;
  step = "stopSession";
  await client.stopSession();
  seen.stopped = true;
  step = "keepAlive after stop";
  try {
    await client.keepAlive();
    seen.after_stop = "kept alive";
  } catch (error) {
    seen.after_stop = error.status ?? error.errorCode ?? String(error);
  }
} catch (error) {
  console.log(JSON.stringify({ failed: step, error: `${error.name}: ${error.message}`, status: error.status ?? null }));
  process.exit(1);
}
console.log(JSON.stringify(seen));
