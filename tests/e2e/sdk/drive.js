// Drives Adobe's own Node SDK, unchanged, against our server (tests/e2e/test_adobe_sdk.py).
// In: SDK_ORG, SDK_API_KEY, SDK_TOKEN, SDK_EVENT_ID, SDK_BODY (JSON), SDK_TIMEOUT_MS.
// Out: one JSON line {"sent": <answer of sendTransactionalEvent>, "reads": [<status of each read>],
// "last": <answer of the last getTransactionalEvent>}; exit code 1 with the error on failure.
const sdk = require('@adobe/aio-lib-campaign-standard')

const env = process.env
const FINAL = ['processed', 'ignored', 'deliveryFailed', 'routingFailed', 'tooOld', 'targetingFailed']

async function main () {
  const client = await sdk.init(env.SDK_ORG, env.SDK_API_KEY, env.SDK_TOKEN)
  const sent = await client.sendTransactionalEvent(env.SDK_EVENT_ID, JSON.parse(env.SDK_BODY))
  const reads = []
  let last = null
  const deadline = Date.now() + Number(env.SDK_TIMEOUT_MS || 30000)
  while (Date.now() < deadline) {
    last = await client.getTransactionalEvent(env.SDK_EVENT_ID, sent.body.PKey)
    reads.push(last.body.status)
    if (FINAL.includes(last.body.status)) break
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  return { sent: { status: sent.status, body: sent.body }, reads, last: { status: last.status, body: last.body } }
}

main()
  .then(result => { process.stdout.write(JSON.stringify(result) + '\n') })
  .catch(error => { process.stderr.write(`${error.stack || error}\n`); process.exit(1) })
