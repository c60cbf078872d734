// A sender that behaves as an Interledger Rafiki node's webhook service does: it POSTs
// {id, type, data} with axios, signs it with `Rafiki-Signature: t=<seconds>, v1=<hex>` over
// `t + "." + canonicalize({id, type, data})` (json-canonicalize, as Rafiki does), counts only
// HTTP 200 as delivered (`validateStatus: (status) => status === 200`) and sends the event
// again after a back-off otherwise.
//
// usage: node rafiki_sender.mjs URL SECRET EVENT_JSON [MAX_ATTEMPTS] [BACKOFF_MS]
// Prints one JSON document: every attempt (status, body or error) and whether it was delivered.
import axios from 'axios'
import { createHmac } from 'node:crypto'
import { canonicalize } from 'json-canonicalize'

const [url, secret, eventJson, maxAttemptsText = '1', backoffText = '100'] = process.argv.slice(2)
const event = JSON.parse(eventJson)
const maxAttempts = Number(maxAttemptsText)
const backoffMs = Number(backoffText)

function signature (body) {
  const timestamp = Math.round(Date.now() / 1000)
  const payload = `${timestamp}.${canonicalize({ id: body.id, type: body.type, data: body.data })}`
  const digest = createHmac('sha256', secret).update(payload).digest('hex')
  return `t=${timestamp}, v1=${digest}`
}

const attempts = []
let delivered = false
for (let attempt = 1; attempt <= maxAttempts && !delivered; attempt++) {
  const body = { id: event.id, type: event.type, data: event.data }
  try {
    const response = await axios.post(url, body, {
      timeout: 10000,
      headers: { 'Content-Type': 'application/json', 'Rafiki-Signature': signature(body) },
      validateStatus: (status) => status === 200
    })
    attempts.push({ attempt, status: response.status, body: response.data })
    delivered = true
  } catch (err) {
    attempts.push({
      attempt,
      status: err.response ? err.response.status : null,
      body: err.response ? err.response.data : null,
      error: err.message
    })
    if (attempt < maxAttempts) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(attempt, 6) * backoffMs))
    }
  }
}
process.stdout.write(JSON.stringify({ delivered, attempts }) + '\n')
